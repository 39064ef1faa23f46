"""The command line on PostgreSQL and Redis: ``--db URL`` and ``AGENTSESSION_DB=URL``.

Every command runs through click's CliRunner against the local test servers (see
``tests/services.py``). The command line has no option for a schema or a key prefix, so
these tests use the defaults (schema ``public``, prefix ``agentsession``) on the shared
servers: each test works on session ids of its own and deletes them afterwards, and no
command that acts on every session (``prune``) is run here.
"""

from __future__ import annotations

import json
import random
import shlex
import string
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner, Result

from agentsession.cli import cli
from agentsession.cli._db import DatabaseUrl, parse_db
from agentsession.cli.demo import FOURTH_TURN, TURNS
from tests import services

# No key, no model server, no user database: every test states what it uses.
from tests.test_cli import _clean_env  # noqa: F401  (an autouse fixture)

PASSWORD = "s3cret"

TOOL_SESSION = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "sunny in Paris"},
    {"role": "assistant", "content": "It is sunny."},
]


def invoke(*args: str, input: str | None = None) -> Result:
    """Run the command line; a crash (anything but a clean exit) fails the test."""
    result = CliRunner().invoke(cli, list(args), input=input)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def open_store(url: str) -> Any:
    """The store the command line opens for ``url``, opened directly."""
    if urlsplit(url).scheme.startswith("postgres"):
        from agentsession.stores.postgres import PostgresStore

        return PostgresStore(url)
    from agentsession.stores.redis import RedisStore

    return RedisStore(url)


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in its user info (the test servers accept any)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{password}@{host}"))


@pytest.fixture(params=["postgres", "redis", "redis-cluster"])
def server(request: pytest.FixtureRequest) -> str:
    """The URL of a test server (each test runs on each)."""
    if request.param == "redis-cluster":
        return services.redis_cluster_url()
    return services.postgres_dsn() if request.param == "postgres" else services.redis_url()


@pytest.fixture
def session_ids() -> Iterator[Callable[[str], str]]:
    """``session_ids(url)`` is a fresh session id on ``url``, deleted after the test."""
    made: list[tuple[str, str]] = []

    def new(url: str) -> str:
        session_id = services.unique_name("cli")
        made.append((url, session_id))
        return session_id

    yield new
    for url, session_id in made:
        with open_store(url) as store:
            store.clear_session(session_id)


def stored(url: str, session_id: str) -> list[dict[str, Any]]:
    with open_store(url) as store:
        messages: list[dict[str, Any]] = store.get_messages(session_id)
        return messages


# -- parsing --------------------------------------------------------------------------------


def test_paths_and_urls_are_told_apart() -> None:
    assert parse_db("sessions.db") == Path("sessions.db")
    assert parse_db("C:\\data\\sessions.db") == Path("C:\\data\\sessions.db")
    assert parse_db("C://data/sessions.db") == Path("C://data/sessions.db")  # a drive
    assert parse_db("~/s.db") == Path.home() / "s.db"
    for url, engine in [
        ("postgresql://u@h/db", "postgres"),
        ("postgres://h/db", "postgres"),
        ("POSTGRESQL://h/db", "postgres"),
        ("redis://h:6379/0", "redis"),
        ("rediss://h/0", "redis"),
        ("unix:///run/redis.sock?db=0", "redis"),
    ]:
        parsed = parse_db(url)
        assert isinstance(parsed, DatabaseUrl) and parsed.engine == engine, url
    assert parse_db("POSTGRESQL://h/db") == DatabaseUrl("postgresql://h/db", "postgres")


def test_a_url_prints_with_its_password_masked() -> None:
    url = parse_db(f"postgresql://me:{PASSWORD}@db.example:5432/app?sslmode=require")
    assert str(url) == "postgresql://me:***@db.example:5432/app?sslmode=require"
    assert PASSWORD not in repr(url)
    assert str(parse_db(f"redis://:{PASSWORD}@h:6379/0")) == "redis://:***@h:6379/0"
    query = parse_db(f"unix:///run/redis.sock?db=0&password={PASSWORD}")
    assert str(query) == "unix:///run/redis.sock?db=0&password=***"
    assert str(parse_db("redis://h:6379/0")) == "redis://h:6379/0"


@pytest.mark.parametrize("url", [f"mysql://root:{PASSWORD}@localhost/app", "http://example.com/"])
def test_an_unknown_scheme_is_refused_naming_what_is_accepted(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for result in (
        invoke("sessions", "--db", url),
        invoke("demo", "--db", url),
        invoke("import", "dump.jsonl", "--create", "--db", url),
    ):
        assert result.exit_code == 2, result.output
        assert "is neither a file path nor a database URL" in result.output
        assert "postgresql://" in result.output and "redis://" in result.output
        assert PASSWORD not in result.output
    monkeypatch.setenv("AGENTSESSION_DB", url)
    result = invoke("sessions")
    assert result.exit_code == 2 and "AGENTSESSION_DB" in result.output


def test_a_windows_path_is_a_file_not_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("sessions", "--db", "C:\\nowhere\\sessions.db")
    assert result.exit_code == 1 and "no database at C:\\nowhere\\sessions.db" in result.output
    assert list(tmp_path.iterdir()) == []


# -- the demo -------------------------------------------------------------------------------


def test_demo_on_a_server_survives_a_fresh_memory(
    server: str, session_ids: Callable[[str], str]
) -> None:
    session_id = session_ids(server)
    result = invoke("demo", "--db", server, "--session", session_id)
    assert result.exit_code == 0, result.output
    out = result.output
    kind = "PostgresSessionMemory" if server.startswith("postgres") else "RedisSessionMemory"
    assert f"Database: {server} (session {session_id!r})" in out
    for question in (*TURNS, FOURTH_TURN):
        assert f"User: {question}" in out
    fresh = out.split(f"A fresh {kind} on the same database, as after a restart:")[1]
    assert f'6 earlier messages; you first asked "{TURNS[0]}"' in fresh
    shown = shlex.quote(server)  # a cluster URL's "?" is quoted for the shell
    assert f"agentsession chat --db {shown} --session {session_id}" in out
    assert f"agentsession show {session_id} --db {shown}" in out
    messages = stored(server, session_id)
    assert len(messages) == 8 and messages[0] == {"role": "user", "content": TURNS[0]}
    # A second run starts the same way: it clears the session first.
    again = invoke("demo", "--db", server, "--session", session_id)
    assert "cleared of 8 messages from an earlier run" in again.output
    assert len(stored(server, session_id)) == 8


def test_the_url_can_come_from_the_environment(
    server: str, session_ids: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSESSION_DB", server)
    session_id = session_ids(server)
    result = invoke("demo", "--session", session_id)
    assert result.exit_code == 0, result.output
    # The environment already names the database, so the hints leave --db out.
    assert f"agentsession show {session_id}\n" in result.output
    listed = json.loads(invoke("sessions", "--json").output)
    assert {"session_id": session_id, "message_count": 8} in [
        {key: info[key] for key in ("session_id", "message_count")} for info in listed
    ]


def test_chat_on_a_server_names_it_and_remembers(
    server: str, session_ids: Callable[[str], str]
) -> None:
    session_id = session_ids(server)
    result = invoke("chat", "--db", server, "--session", session_id, input="hello there\n/exit\n")
    assert result.exit_code == 0, result.output
    assert f"agentsession chat: {server}" in result.output
    assert [m.get("role") for m in stored(server, session_id)] == ["user", "assistant"]


# -- inspecting and history commands ----------------------------------------------------


def test_sessions_show_clear_export_import_round_trip(
    server: str, session_ids: Callable[[str], str], tmp_path: Path
) -> None:
    tools, chat, forked = session_ids(server), session_ids(server), session_ids(server)
    with open_store(server) as store:
        store.add_messages(tools, TOOL_SESSION)
        store.add_messages(chat, [{"role": "user", "content": "hi"}])
        store.set_metadata(tools, {"user_id": "u1"})

    listed = json.loads(invoke("sessions", "--db", server, "--json").output)
    counts = {info["session_id"]: info["message_count"] for info in listed}
    assert (counts[tools], counts[chat]) == (4, 1)
    assert tools in invoke("sessions", "--db", server).output

    assert json.loads(invoke("show", tools, "--db", server, "--json").output) == TOOL_SESSION
    shown = invoke("show", tools, "--db", server).output
    assert f"Session {tools!r} in {server}: 4 messages" in shown
    assert 'Tool call: get_weather({"city": "Paris"})' in shown

    dump = tmp_path / "dump.jsonl"
    result = invoke("export", str(dump), "--db", server, "--session", tools, "--session", chat)
    assert result.exit_code == 0, result.output
    first = dump.read_text(encoding="utf-8")

    declined = invoke("clear", chat, "--db", server, input="n\n")
    assert declined.exit_code == 1 and f"from {server}?" in declined.output
    for session_id in (tools, chat):
        result = invoke("clear", session_id, "--db", server, "--yes")
        assert result.exit_code == 0 and "Deleted session" in result.output
    missing = invoke("show", tools, "--db", server)
    assert missing.exit_code == 1 and f"no session {tools!r} in {server}" in missing.output

    # --create is for files; with a URL the server is just used.
    result = invoke("import", str(dump), "--db", server, "--create")
    assert result.exit_code == 0 and f"Imported 2 sessions into {server}." in result.output
    assert stored(server, tools) == TOOL_SESSION
    again = tmp_path / "again.jsonl"
    invoke("export", str(again), "--db", server, "--session", tools, "--session", chat)
    assert again.read_text(encoding="utf-8") == first
    conflict = invoke("import", str(dump), "--db", server)
    assert conflict.exit_code == 1 and repr(tools) in conflict.output

    assert json.loads(invoke("meta", tools, "--db", server, "--json").output) == {"user_id": "u1"}
    assert invoke("meta", tools, "title=Trip", "--db", server).exit_code == 0
    assert "title = " in invoke("meta", tools, "--db", server).output
    result = invoke("fork", tools, forked, "--at", "2", "--db", server)
    assert result.exit_code == 0 and "2 messages" in result.output
    removed = json.loads(invoke("rewind", tools, "--db", server, "--yes", "--json").output)
    assert removed == TOOL_SESSION
    assert stored(server, tools) == [] and len(stored(server, forked)) == 2


def _word() -> str:
    """A word no other session on the shared server contains."""
    return "zq" + "".join(random.choices(string.ascii_lowercase, k=14))


def test_search_on_postgres(session_ids: Callable[[str], str]) -> None:
    url = services.postgres_dsn()
    session_id, word = session_ids(url), _word()
    with open_store(url) as store:
        store.add_messages(session_id, [{"role": "user", "content": f"the {word} bridge"}])
    result = invoke("search", word, "--db", url)
    assert result.exit_code == 0, result.output
    assert f"{session_id} #1" in result.output
    hits = json.loads(invoke("search", word, "--db", url, "--json").output)
    assert [(hit["session_id"], hit["position"]) for hit in hits] == [(session_id, 1)]
    assert "No messages match" in invoke("search", _word(), "--db", url).output


def test_search_on_redis_is_a_clean_error() -> None:
    result = invoke("search", "bridge", "--db", services.redis_url())
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "search" in result.output
    assert len(result.output.strip().splitlines()) == 1


# -- secrets and failures ---------------------------------------------------------------


def test_a_password_in_the_url_is_never_printed(
    session_ids: Callable[[str], str], tmp_path: Path
) -> None:
    url = with_password(services.postgres_dsn(), PASSWORD)
    masked = with_password(services.postgres_dsn(), "***")
    session_id = session_ids(url)

    demo = invoke("demo", "--db", url, "--session", session_id)
    assert demo.exit_code == 0, demo.output
    assert f"Database: {masked}" in demo.output and f"Stored in {masked}" in demo.output
    # Only the commands to type next carry the URL as given: a masked one would not work.
    leaking = [line for line in demo.output.splitlines() if PASSWORD in line]
    assert [line.split()[:2] for line in leaking] == [
        ["agentsession", "chat"],
        ["agentsession", "show"],
        ["agentsession", "usage"],
        ["agentsession", "compact"],
    ]

    dump = tmp_path / "dump.jsonl"
    outputs = [
        invoke("sessions", "--db", url),
        invoke("show", session_id, "--db", url),
        invoke("show", "no-such-session", "--db", url),
        invoke("export", str(dump), "--db", url, "--session", session_id),
        invoke("clear", session_id, "--db", url, input="y\n"),
        invoke("import", str(dump), "--db", url),
        invoke("chat", "--db", url, "--session", session_id, input="/exit\n"),
    ]
    for result in outputs:
        assert PASSWORD not in result.output, result.output
    assert f"from {masked}?" in outputs[4].output
    assert f"Imported 1 sessions into {masked}." in outputs[5].output
    assert f"agentsession chat: {masked}" in outputs[6].output


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0",
        f"redis://:{PASSWORD}@127.0.0.1:1/0",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
    ],
    ids=["redis", "redis-with-password", "postgres-with-password"],
)
@pytest.mark.parametrize(
    "command",
    [("sessions",), ("show", "s"), ("search", "x"), ("import", "-"), ("demo",), ("chat",)],
    ids=lambda c: c[0],
)
def test_an_unreachable_server_is_one_line_naming_it(url: str, command: tuple[str, ...]) -> None:
    result = invoke(*command, "--db", url, input="")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert "127.0.0.1:1" in result.output
    assert PASSWORD not in result.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{PASSWORD}@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),
        (f"redis://me:{PASSWORD}@127.0.0.1:1/0", "redis://me:***@127.0.0.1:1/0"),
        (f"postgresql://me:{PASSWORD}@127.0.0.1:1/test", "postgresql://me:***@127.0.0.1:1/test"),
    ],
    ids=["redis", "redis-user", "postgres"],
)
def test_an_error_names_the_server_with_its_password_masked(url: str, shown: str) -> None:
    """As docs/cli.md says: ``user:***@``, not the URL without its password."""
    result = invoke("sessions", "--db", url)
    assert result.exit_code == 1, result.output
    assert shown in result.output and PASSWORD not in result.output


@pytest.mark.parametrize(
    ("driver", "module", "url", "extra"),
    [
        ("psycopg", "postgres", "postgresql://postgres@127.0.0.1:5432/test", "postgres"),
        ("redis", "redis", "redis://127.0.0.1:6379/0", "redis"),
    ],
    ids=["postgres", "redis"],
)
@pytest.mark.parametrize("command", [("sessions",), ("demo",)], ids=lambda c: c[0])
def test_a_missing_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
    module: str,
    url: str,
    extra: str,
    command: tuple[str, ...],
) -> None:
    # As if the driver were not installed; monkeypatch puts both modules back afterwards.
    monkeypatch.setitem(sys.modules, driver, None)
    for name in [n for n in sys.modules if n.startswith(f"agentsession.stores.{module}")]:
        monkeypatch.delitem(sys.modules, name)
    result = invoke(*command, "--db", url)
    assert result.exit_code == 1, result.output
    assert f"pip install 'agentsession[{extra}]'" in result.output
    assert len(result.output.strip().splitlines()) == 1
