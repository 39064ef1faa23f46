"""``agentsession ui`` over plain HTTP: the security rules, and the pages on every engine.

Each test talks to a real uvicorn server on 127.0.0.1 (``tests/ui_support.py``).
"""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import markupsafe
import pytest
from click.testing import CliRunner

from agentsession import RunRecord, SQLiteStore
from agentsession.cli import cli
from agentsession.ui.security import CSP, allowed_hosts, is_loopback
from tests.conftest import ENGINES
from tests.ui_support import (
    HOSTILE,
    HOSTILE_ID,
    hostile_conversation,
    running_ui,
    weather_conversation,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    store = SQLiteStore(tmp_path / "sessions.db")
    store.add_messages("weather", weather_conversation())
    store.set_metadata("weather", {"user": "alice"})
    yield store
    store.close()


PAGES = ["/", "/session?id=weather", "/search?q=Paris", "/static/ui.css", "/export?id=weather"]


@pytest.mark.parametrize("path", PAGES)
def test_no_token_gets_403_and_no_data(sqlite_store: Any, path: str) -> None:
    with running_ui(sqlite_store, allow_writes=True) as ui:
        status, headers, body = ui.request("GET", path, cookie=False)
        assert status == 403
        assert "weather" not in body and "Paris" not in body and "{" not in body
        assert "set-cookie" not in headers


def test_wrong_token_gets_403_wrong_cookie_too(sqlite_store: Any) -> None:
    with running_ui(sqlite_store) as ui:
        status, headers, body = ui.request("GET", "/?token=nope", cookie=False)
        assert status == 403 and "weather" not in body and "set-cookie" not in headers
        wrong = {"Cookie": f"{ui.settings.cookie}=nope"}
        status, _, body = ui.request("GET", "/", cookie=False, headers=wrong)
        assert status == 403 and "weather" not in body


def test_the_token_sets_a_cookie_and_leaves_the_address(sqlite_store: Any) -> None:
    with running_ui(sqlite_store) as ui:
        status, headers, _ = ui.request(
            "GET", f"/session?id=weather&token={ui.settings.token}", cookie=False
        )
        assert status == 303
        assert headers["location"] == "/session?id=weather"
        cookie = headers["set-cookie"]
        assert cookie.startswith(f"{ui.settings.cookie}={ui.settings.token};")
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        status, _, body = ui.request(
            "GET", "/session?id=weather", cookie=False, headers={"Cookie": cookie.split(";")[0]}
        )
        assert status == 200 and "get_weather" in body


def test_the_token_redirect_never_leaves_the_server(sqlite_store: Any) -> None:
    with running_ui(sqlite_store) as ui:
        status, headers, _ = ui.request(
            "GET", f"//evil.example/x?q=&token={ui.settings.token}", cookie=False
        )
    assert status == 303
    assert headers["location"] == "/evil.example/x?q="


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "", "localhost.evil:{port}"]
)
def test_a_foreign_host_header_is_refused(sqlite_store: Any, host: str) -> None:
    with running_ui(sqlite_store) as ui:
        host = host.format(port=ui.port)
        status, _, body = ui.request("GET", "/", headers={"Host": host})
        assert status == 403 and "weather" not in body
        status, headers, _ = ui.request(
            "GET", f"/?token={ui.settings.token}", cookie=False, headers={"Host": host}
        )
        assert status == 403 and "set-cookie" not in headers


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}"])
def test_the_loopback_names_of_the_bound_port_are_accepted(sqlite_store: Any, host: str) -> None:
    with running_ui(sqlite_store) as ui:
        status, _, _ = ui.request("GET", "/", headers={"Host": host.format(port=ui.port)})
        assert status == 200


def test_every_answer_carries_the_csp_refusals_too(sqlite_store: Any) -> None:
    with running_ui(sqlite_store) as ui:
        for path, cookie in [("/", True), ("/", False), ("/static/ui.js", True)]:
            _, headers, _ = ui.request("GET", path, cookie=cookie)
            assert headers["content-security-policy"] == CSP
            assert headers["cache-control"] == "no-store"
            assert headers["referrer-policy"] == "same-origin"
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP


@pytest.mark.parametrize("path", ["/rewind", "/fork", "/clear", "/metadata"])
def test_get_never_changes_anything(sqlite_store: Any, path: str) -> None:
    before = sqlite_store.get_messages("weather")
    with running_ui(sqlite_store, allow_writes=True) as ui:
        query = f"?id=weather&csrf={ui.settings.csrf}&new_id=copy&metadata=%7B%7D"
        status, _, _ = ui.request("GET", path + query)
        assert status == 405
    assert sqlite_store.get_messages("weather") == before
    assert sqlite_store.session_info("copy") is None
    assert sqlite_store.session_info("weather").metadata == {"user": "alice"}


@pytest.mark.parametrize("csrf", [None, "", "wrong"])
def test_a_post_without_the_csrf_token_is_refused(sqlite_store: Any, csrf: str | None) -> None:
    with running_ui(sqlite_store, allow_writes=True) as ui:
        form = {"id": "weather"} if csrf is None else {"id": "weather", "csrf": csrf}
        status, _, _ = ui.request("POST", "/clear", form=form)
        assert status == 403
    assert sqlite_store.message_count("weather") == 7


def test_a_post_from_another_origin_is_refused(sqlite_store: Any) -> None:
    with running_ui(sqlite_store, allow_writes=True) as ui:
        status, _, _ = ui.post(
            "/clear", {"id": "weather"}, headers={"Origin": "http://evil.example"}
        )
        assert status == 403
        assert sqlite_store.message_count("weather") == 7
        status, _, _ = ui.post("/clear", {"id": "weather"}, headers={"Origin": ui.base[:-1]})
        assert status == 303
    assert sqlite_store.session_info("weather") is None


def test_read_only_refuses_every_change_and_offers_none(sqlite_store: Any) -> None:
    with running_ui(sqlite_store) as ui:
        for path, form in [
            ("/rewind", {"id": "weather"}),
            ("/fork", {"id": "weather", "new_id": "copy"}),
            ("/clear", {"id": "weather"}),
            ("/metadata", {"id": "weather", "metadata": "{}"}),
        ]:
            status, _, _ = ui.post(path, form)
            assert status == 403, path
        status, _, _ = ui.request("GET", "/export?id=weather")
        assert status == 403
        _, _, body = ui.request("GET", "/session?id=weather")
        assert "read-only" in body and 'action="/rewind"' not in body
    assert sqlite_store.message_count("weather") == 7
    assert sqlite_store.session_info("copy") is None
    assert sqlite_store.session_info("weather").metadata == {"user": "alice"}


def test_changes_with_allow_writes(sqlite_store: Any) -> None:
    with running_ui(sqlite_store, allow_writes=True) as ui:
        status, headers, _ = ui.post("/fork", {"id": "weather", "new_id": "copy", "at": "1"})
        assert (status, headers["location"]) == (303, "/session?id=copy")
        assert sqlite_store.get_messages("copy") == weather_conversation()[:1]
        status, _, _ = ui.post("/metadata", {"id": "copy", "metadata": '{"title": "t"}'})
        assert status == 303 and sqlite_store.session_info("copy").metadata == {"title": "t"}
        status, _, body = ui.post("/metadata", {"id": "copy", "metadata": "[1]"})
        assert status == 400 and "must be a JSON object" in body
        assert sqlite_store.session_info("copy").metadata == {"title": "t"}
        status, _, body = ui.post("/fork", {"id": "weather", "new_id": "copy"})
        assert status == 400 and "copy" in body
        status, headers, body = ui.request("GET", "/export?id=weather")
        assert status == 200 and "attachment" in headers["content-disposition"]
        assert '"get_weather"' in body
        status, _, _ = ui.post("/rewind", {"id": "weather"})
        assert status == 303 and sqlite_store.message_count("weather") == 0
        status, headers, _ = ui.post("/clear", {"id": "copy"})
        assert (status, headers["location"]) == (303, "/")
    assert sqlite_store.session_info("copy") is None


def test_stored_html_is_shown_as_text(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "h.db") as store:
        store.add_messages(HOSTILE_ID, hostile_conversation())
        store.set_metadata(HOSTILE_ID, {HOSTILE: HOSTILE})
        with running_ui(store, allow_writes=True) as ui:
            pages = [
                ui.request("GET", "/")[2],
                ui.request("GET", f"/session?id={quote(HOSTILE_ID)}")[2],
                ui.request("GET", "/search?q=hostile")[2],
            ]
    for body in pages:
        assert "<script>window.__pwned" not in body
        assert "<img src=x" not in body and "<b>x</b>" not in body
        # No script runs but our own file.
        assert re.findall(r"<script[^>]*>", body) == ['<script src="/static/ui.js" defer>']
    assert str(markupsafe.escape(HOSTILE)) in pages[1]
    assert "&lt;b&gt;tool&lt;/b&gt;" in pages[1]


def _seed(store: Any) -> None:
    store.add_messages("weather", weather_conversation())
    store.set_metadata("weather", {"user": "alice"})
    store.add_messages("other", [{"role": "user", "content": "hello there"}])
    store.set_metadata("other", {"user": "bob"})


def test_the_pages_on_every_engine(store: Any, store_kind: str) -> None:
    _seed(store)
    with running_ui(store) as ui:
        status, _, body = ui.request("GET", "/")
        assert status == 200
        assert body.index(">other<") < body.index(">weather<")  # newest activity first
        _, _, body = ui.request("GET", "/?meta=user%3Dalice")
        assert ">weather<" in body and ">other<" not in body
        status, _, body = ui.request("GET", "/session?id=weather")
        assert status == 200
        assert 'handoff → <code class="agent">booking_agent</code>' in body
        # The call's arguments and its output are drawn together, in the call's entry.
        call = re.search(r'<article class="entry tool[^>]*>(.*?)</article>', body, re.S)
        assert call and "get_weather" in call.group(1)
        assert "&#34;city&#34;: &#34;Paris&#34;" in call.group(1)
        assert "Sunny, 22 °C" in call.group(1)
        assert '<details class="reasoning">' in body
        status, _, body = ui.request("GET", "/search?q=sunny")
        assert status == 200
        if ENGINES[store_kind] == "redis":
            assert "has no full-text search" in body
        else:
            assert "<mark>" in body and "/session?id=weather&amp;at=" in body


def test_an_unknown_session_is_404(sqlite_store: Any) -> None:
    with running_ui(sqlite_store) as ui:
        status, _, body = ui.request("GET", "/session?id=nope")
        assert status == 404 and "no session" in body
        status, _, body = ui.request("GET", "/session?id=")
        assert status == 400


def test_sessions_are_paged(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "many.db") as store:
        for n in range(120):
            store.add_messages(f"s{n:03}", [{"role": "user", "content": "hi"}])
        seen: list[str] = []
        with running_ui(store) as ui:
            path: str | None = "/"
            while path is not None:
                _, _, body = ui.request("GET", path)
                page = re.findall(r'class="session-link"[^>]*>([^<]+)<', body)
                assert len(page) <= 50
                seen += page
                found = re.search(r'class="next" href="([^"]+)"', body)
                path = html.unescape(found.group(1)) if found else None
    assert seen == [f"s{n:03}" for n in reversed(range(120))]


def test_a_long_transcript_is_shown_newest_first_page_then_earlier(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "long.db") as store:
        store.add_messages("long", [{"role": "user", "content": f"m{n}"} for n in range(1, 451)])
        with running_ui(store) as ui:
            _, _, body = ui.request("GET", "/session?id=long")
            shown = [int(n) for n in re.findall(r'<article[^>]*id="m(\d+)"', body)]
            assert shown == list(range(251, 451))
            assert "250 not shown" in body
            _, _, body = ui.request("GET", "/session?id=long&show=400")
            assert re.findall(r'<article[^>]*id="m(\d+)"', body)[0] == "51"
            _, _, body = ui.request("GET", "/session?id=long&at=7")
            assert 'id="m7"' in body and ">m7<" in body


@dataclass
class _Usage:
    total_tokens: int


@dataclass
class _Run:
    started_at: datetime
    input_tokens: int
    output_tokens: int
    total_tokens: int


class _LedgerStore(SQLiteStore):
    """A store with a usage ledger, as the ledger seam (``ui.ledger``) expects one."""

    def usage(self, session_id: str) -> _Usage:
        return _Usage(total_tokens=1234 if session_id == "weather" else 0)

    def runs(self, session_id: str, limit: int = 20) -> list[_Run]:
        at = datetime(2026, 1, 1, tzinfo=timezone.utc)
        return [_Run(at, 100, 20, 120), _Run(at, 50, 10, 60)][:limit]


class _PlainStore(SQLiteStore):
    """A store without a usage ledger (a store of one's own may have none)."""

    usage = None  # type: ignore[assignment]
    runs = None  # type: ignore[assignment]


@pytest.mark.parametrize("kind", [_PlainStore, _LedgerStore])
def test_tokens_are_shown_only_where_the_store_keeps_a_ledger(tmp_path: Path, kind: type) -> None:
    with kind(tmp_path / "t.db") as store:
        _seed(store)
        with running_ui(store) as ui:
            listing = ui.request("GET", "/")[2]
            page = ui.request("GET", "/session?id=weather")[2]
    if kind is _PlainStore:
        assert "Tokens" not in listing and "tokens" not in page and "<svg" not in page
    else:
        assert ">Tokens<" in listing and ">1234<" in listing
        assert "1234 tokens" in page
        heights = [int(h) for h in re.findall(r'<rect class="bar"[^>]* height="(\d+)"', page)]
        assert heights == [60, 120]  # oldest run first, the biggest one full height


def test_the_pages_show_the_tokens_agentsessions_own_ledger_records(tmp_path: Path) -> None:
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with SQLiteStore(tmp_path / "t.db") as store:
        _seed(store)
        for n, total in enumerate((300, 200), 1):
            run = RunRecord(
                f"r{n}", "weather", at, at, "A", "m", 1, total - 50, 50, total, 0, 0, 0, "failed"
            )
            store.add_messages("weather", [], run=run)
        with running_ui(store) as ui:
            listing = ui.request("GET", "/")[2]
            page = ui.request("GET", "/session?id=weather")[2]
    assert ">Tokens<" in listing and ">500<" in listing
    assert "500 tokens" in page
    heights = [int(h) for h in re.findall(r'<rect class="bar"[^>]* height="(\d+)"', page)]
    assert heights == [120, 80]  # oldest run first, the biggest one full height


def test_the_loopback_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert allowed_hosts("0.0.0.0", 80) is None
    assert allowed_hosts("192.0.2.1", 80) == frozenset({"192.0.2.1:80"})


def test_without_the_extra_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, sqlite_store: Any
) -> None:
    monkeypatch.setitem(sys.modules, "starlette", None)
    result = CliRunner().invoke(cli, ["ui", "--no-browser"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: agentsession ui needs the 'starlette' package, which is not installed: "
        "pip install 'agentsession[ui]'"
    ]


@pytest.mark.parametrize("open_browser", [True, False], ids=["browser", "no-browser"])
def test_the_command_serves_prints_the_address_and_stops_on_ctrl_c(
    sqlite_store: Any, tmp_path: Path, open_browser: bool
) -> None:
    from tests.ui_support import Ui

    # A "browser" that prints the address it was asked to open on the shared stdout.
    browser = tmp_path / "browser.py"
    browser.write_text("import sys\nprint('opened', sys.argv[1], flush=True)\n")
    db = tmp_path / "sessions.db"
    command = [sys.executable, "-m", "agentsession", "ui", "--db", str(db), "--port", "0"]
    process = subprocess.Popen(
        command + ([] if open_browser else ["--no-browser"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BROWSER": f"{sys.executable} {browser} %s"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=(\S+))", line)
        assert found, line
        assert "read-only" in line
        url, port, token = found.group(1), int(found.group(2)), found.group(3)
        if open_browser:
            assert process.stdout.readline().split() == ["opened", url]
        ui = Ui(f"http://127.0.0.1:{port}/", port, _settings(port, token))
        status, _, body = ui.request("GET", "/")
        assert status == 200 and ">weather<" in body
        assert ui.request("GET", "/", cookie=False)[0] == 403
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "agentsession ui stopped." and "Traceback" not in err


def test_a_host_other_than_loopback_is_warned_about(
    sqlite_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentsession.ui import server

    served: list[Any] = []
    monkeypatch.setattr(server, "serve", lambda app, sock, open_url: served.append(open_url))
    db = str(tmp_path / "sessions.db")
    result = CliRunner().invoke(cli, ["ui", "--db", db, "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert "Warning: --host 0.0.0.0 is reachable from other machines" in result.stderr
    assert served and served[0].startswith("http://127.0.0.1:")
    result = CliRunner().invoke(cli, ["ui", "--db", db, "--port", "0", "--no-browser"])
    assert result.exit_code == 0 and result.stderr == "" and served[1] is None


def _settings(port: int, token: str) -> Any:
    from agentsession.ui import Settings

    return Settings(token, "", None, f"agentsession-ui-{port}", False, "")


def test_the_command_refuses_a_port_in_use(sqlite_store: Any, tmp_path: Path) -> None:
    with running_ui(sqlite_store) as ui:
        result = CliRunner().invoke(
            cli, ["ui", "--db", str(tmp_path / "sessions.db"), "--port", str(ui.port)]
        )
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on --host 127.0.0.1 --port {ui.port}")


def test_the_session_page_marks_a_compaction_summary(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "compacted.db") as store:
        store.add_messages("c", weather_conversation() + [{"role": "user", "content": "next"}])
        store.compact_with("c", "they talked about the weather", items=7)
        with running_ui(store) as ui:
            _, _, body = ui.request("GET", "/session?id=c")
            article = re.search(
                r'<article class="entry summary[^"]*" id="m1">(.*?)</article>', body, re.S
            )
            assert article is not None
            assert "summary of earlier turns" in article.group(1)
            assert "they talked about the weather" in article.group(1)
