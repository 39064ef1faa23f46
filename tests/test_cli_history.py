"""The history verbs of the command line: search, export, import, prune, fork, rewind, meta.

Each runs through click's CliRunner on a database filled through the store. Like the
inspecting commands, they must never create a database by accident, never print a
traceback, and exit non-zero on every error.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agentsession import SQLiteStore
from agentsession.cli import cli
from agentsession.cli.history import parse_duration


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSESSION_DB", raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.db"
    with SQLiteStore(path) as store:
        store.add_messages(
            "trip", [user("Tell me about the Golden Gate Bridge"), assistant("A bridge.")]
        )
        store.add_messages("trip", [user("How long is it?"), assistant("2.7 km.")])
        store.add_messages("other", [user("bridge club rules")])
        store.set_metadata("trip", {"user_id": "u1"})
    return path


def run(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_the_verbs_are_registered() -> None:
    listed = run("--help").output
    for verb in ("search", "export", "import", "prune", "fork", "rewind", "meta"):
        assert f"  {verb} " in listed


def test_search_prints_hits_and_json(db: Path) -> None:
    result = run("search", "bridge", "--db", str(db))
    assert result.exit_code == 0
    assert "trip #1" in result.output and "[Bridge]" in result.output
    data = json.loads(
        run("search", "bridge", "--db", str(db), "--json", "--session", "other").output
    )
    assert [(h["session_id"], h["position"]) for h in data] == [("other", 1)]
    assert data[0]["message"] == user("bridge club rules")
    assert "No messages match" in run("search", "zebra", "--db", str(db)).output
    assert run("search", '"(AND', "--db", str(db)).exit_code == 0


def test_raw_search_syntax_error_is_one_line(db: Path) -> None:
    result = run("search", '"open', "--raw", "--db", str(db))
    assert result.exit_code == 1 and "Error:" in result.output and "query" in result.output


def test_export_import_round_trip_through_files(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.jsonl"
    result = run("export", str(out), "--db", str(db))
    assert result.exit_code == 0, result.output
    first = out.read_text(encoding="utf-8")
    assert len(first.splitlines()) == 2 + 4 + 1 + 1
    stdout = run("export", "--db", str(db), "--session", "other").stdout
    assert json.loads(stdout.splitlines()[1])["message"] == user("bridge club rules")
    assert stdout.splitlines()[0].startswith('{"type":"session","version":1,"session_id":"other"')
    copy = tmp_path / "copy.db"
    assert run("import", str(out), "--db", str(copy)).exit_code == 1  # not created
    assert not copy.exists()
    result = run("import", str(out), "--db", str(copy), "--create")
    assert result.exit_code == 0 and "Imported 2 sessions" in result.output
    again = tmp_path / "again.jsonl"
    run("export", str(again), "--db", str(copy))
    assert again.read_text(encoding="utf-8") == first
    conflict = run("import", str(out), "--db", str(copy))
    assert conflict.exit_code == 1 and "'trip'" in conflict.output
    assert (
        "Imported 0 sessions"
        in run("import", str(out), "--db", str(copy), "--on-conflict", "skip").output
    )


def test_import_reports_bad_lines_and_stores_nothing(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        b'{"type":"session","version":1,"session_id":"new","created_at":1,"updated_at":2,'
        b'"message_count":1,"metadata":{}}\n\xff\xfe\n'
    )
    result = run("import", str(bad), "--db", str(db))
    assert result.exit_code == 1 and "line 2" in result.output
    with SQLiteStore(db) as store:
        assert store.session_info("new") is None
    missing = run("import", str(tmp_path / "nope.jsonl"), "--db", str(db))
    assert missing.exit_code != 0 and "nope.jsonl" in missing.output


def test_prune_dry_run_confirm_and_keep_last(db: Path) -> None:
    result = run("prune", "--keep-last", "1", "--dry-run", "--db", str(db))
    assert result.exit_code == 0 and "3 messages would be deleted" in result.output
    assert run("prune", "--keep-last", "1", "--db", str(db), input="n\n").exit_code == 1
    result = run("prune", "--keep-last", "1", "--batch", "1", "--db", str(db), "--yes", "--vacuum")
    assert result.exit_code == 0 and "Deleted 3 messages" in result.output
    with SQLiteStore(db) as store:
        assert store.get_messages("trip") == [assistant("2.7 km.")]
    assert "Deleted 0 messages." in run("prune", "--older-than", "30d", "--db", str(db)).output
    assert run("prune", "--db", str(db)).exit_code == 2
    assert run("prune", "--older-than", "soon", "--db", str(db)).exit_code == 2


def test_parse_duration() -> None:
    assert parse_duration("30d").days == 30
    assert parse_duration("1.5h").total_seconds() == 5400
    assert parse_duration(" 2w ").days == 14


def test_fork_and_its_errors(db: Path) -> None:
    result = run("fork", "trip", "trip2", "--at", "2", "--db", str(db))
    assert result.exit_code == 0 and "2 messages" in result.output
    with SQLiteStore(db) as store:
        assert len(store.get_messages("trip2")) == 2
        assert store.session_info("trip2").metadata == {"user_id": "u1"}
    again = run("fork", "trip", "trip2", "--db", str(db))
    assert again.exit_code == 1 and "already has 2 messages" in again.output
    assert run("fork", "nope", "x", "--db", str(db)).exit_code == 1


def test_rewind_removes_last_turns(db: Path) -> None:
    result = run("rewind", "trip", "--db", str(db), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [user("How long is it?"), assistant("2.7 km.")]
    with SQLiteStore(db) as store:
        assert store.message_count("trip") == 2
    assert run("rewind", "nope", "--db", str(db), "--yes").exit_code == 1
    assert run("rewind", "trip", "--turns", "0", "--db", str(db), "--yes").exit_code == 2


def test_meta_shows_sets_unsets_and_replaces(db: Path) -> None:
    assert json.loads(run("meta", "trip", "--db", str(db), "--json").output) == {"user_id": "u1"}
    run("meta", "trip", "title=Bridge trip", "n=3", 'tags=["a"]', "--db", str(db))
    shown = json.loads(run("meta", "trip", "--db", str(db), "--json").output)
    assert shown == {"user_id": "u1", "title": "Bridge trip", "n": 3, "tags": ["a"]}
    run("meta", "trip", "--unset", "tags", "--db", str(db))
    assert "tags" not in run("meta", "trip", "--db", str(db)).output
    run("meta", "trip", "only=1", "--replace", "--db", str(db))
    assert json.loads(run("meta", "trip", "--db", str(db), "--json").output) == {"only": 1}
    assert run("meta", "trip", "novalue", "--db", str(db)).exit_code == 2
    assert run("meta", "nope", "--db", str(db)).exit_code == 1


@pytest.mark.parametrize(
    "args",
    [
        ["search", "x"],
        ["export"],
        ["prune", "--keep-last", "1"],
        ["fork", "a", "b"],
        ["rewind", "a", "--yes"],
        ["meta", "a"],
        ["import", "whatever.jsonl"],
    ],
)
def test_a_missing_database_is_reported_not_created(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "missing.db"
    (tmp_path / "whatever.jsonl").write_text("")
    result = run(*args, "--db", str(path))
    assert result.exit_code == 1 and "no database at" in result.output
    assert not path.exists()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = run("search", "x", "--db", str(path))
    assert result.exit_code == 1 and "not an agentsession database" in result.output
    assert path.read_text() == "hello"


def _filled_then_emptied(path: Path) -> int:
    """A database whose space was freed by deleting a session: its size before vacuum."""
    with SQLiteStore(path) as store:
        store.add_messages("big", [user("x" * 4000) for _ in range(300)])
        store.clear_session("big")
    return path.stat().st_size


def test_vacuum_gives_space_back(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    before = _filled_then_emptied(path)
    result = run("vacuum", "--db", str(path))
    assert result.exit_code == 0, result.output
    assert "Vacuumed" in result.output
    assert path.stat().st_size < before / 4
    assert "vacuum" in run("--help").output


def test_prune_vacuum_with_nothing_to_delete_still_vacuums(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    before = _filled_then_emptied(path)
    result = run("prune", "--older-than", "30d", "--vacuum", "--db", str(path))
    assert result.exit_code == 0, result.output
    assert "Deleted 0 messages and vacuumed." in result.output
    assert path.stat().st_size < before / 4


def test_export_to_stdout_imports_from_stdin(db: Path, tmp_path: Path) -> None:
    exported = run("export", "-", "--db", str(db))
    assert exported.exit_code == 0
    copy = tmp_path / "copy.db"
    result = run("import", "-", "--db", str(copy), "--create", input=exported.stdout)
    assert result.exit_code == 0, result.output
    assert "Imported 2 sessions" in result.output
    with SQLiteStore(copy) as store:
        assert store.message_count("trip") == 4


def test_an_interrupted_export_leaves_the_old_file_whole(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "dump.jsonl"
    assert run("export", str(out), "--db", str(db)).exit_code == 0
    before = out.read_bytes()
    write_one = SQLiteStore._jsonl_export_one

    def interrupted(self: SQLiteStore, session_id: str, fp: Any) -> bool:
        if session_id == "other":  # the second session: Ctrl-C half way through
            raise KeyboardInterrupt
        return write_one(self, session_id, fp)

    monkeypatch.setattr(SQLiteStore, "_jsonl_export_one", interrupted)
    assert run("export", str(out), "--db", str(db)).exit_code == 1  # click's "Aborted!"
    assert out.read_bytes() == before
    assert not [path for path in tmp_path.iterdir() if path.suffix == ".tmp"]


def test_an_export_file_is_readable_by_its_owner_only(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.jsonl"
    assert run("export", str(out), "--db", str(db)).exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600


def test_import_of_an_export_cut_short_fails_and_says_so(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.jsonl"
    assert run("export", str(out), "--db", str(db)).exit_code == 0
    lines = out.read_bytes().split(b"\n")
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"\n".join(lines[:5]) + b"\n")  # the first session, whole; no trailer
    result = run("import", str(cut), "--db", str(tmp_path / "copy.db"), "--create")
    assert result.exit_code == 1
    assert "cut short" in result.output


def test_import_counts_skipped_sessions_and_speaks_in_flags(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.jsonl"
    assert run("export", str(out), "--db", str(db)).exit_code == 0
    conflict = run("import", str(out), "--db", str(db))
    assert conflict.exit_code == 1
    assert "(use --on-conflict skip or replace)" in conflict.output
    skipped = run("import", str(out), "--db", str(db), "--on-conflict", "skip")
    assert "Imported 0 sessions" in skipped.output
    assert "(2 skipped: already in the database)" in skipped.output
    past = run("fork", "trip", "copy", "--at", "99", "--db", str(db))
    assert past.exit_code == 1 and "--at 99 is past the end" in past.output
    assert "at=" not in past.output


def test_the_import_bar_on_a_terminal_shows_sessions_not_bytes(db: Path, tmp_path: Path) -> None:
    """On a terminal (a real pty as stderr) the bar shows the share of the file read and
    the sessions imported so far, not raw byte counts."""
    out = tmp_path / "dump.jsonl"
    assert run("export", str(out), "--db", str(db)).exit_code == 0
    size = out.stat().st_size
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentsession", "import", str(out), "--create"]
        + ["--db", str(tmp_path / "copy.db")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"},
    )
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert process.wait(30) == 0
    text = screen.decode()
    assert "Importing" in text and "100%" in text and "2 sessions" in text
    assert f"/{size}" not in text and str(size) not in text
