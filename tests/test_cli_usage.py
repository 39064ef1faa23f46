"""``agentsession usage`` and the TOKENS column of ``agentsession sessions``: the usage
ledger on the command line, read from a database whose runs are known."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agentsession import RunRecord, SQLiteStore
from agentsession.cli import cli

START = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def run(session_id: str, n: int, **changes: Any) -> RunRecord:
    values: dict[str, Any] = {
        "run_id": f"{session_id}-{n}",
        "session_id": session_id,
        "started_at": START + timedelta(minutes=n),
        "ended_at": START + timedelta(minutes=n, seconds=2),
        "agent": "Assistant",
        "model": "gpt-test",
        "requests": n,
        "input_tokens": 100 * n,
        "output_tokens": 10 * n,
        "total_tokens": 110 * n,
        "cached_input_tokens": 5 * n,
        "reasoning_tokens": 3 * n,
        "items_added": 2,
        "outcome": "completed",
    }
    values.update(changes)
    return RunRecord(**values)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("AGENTSESSION_DB", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    path = tmp_path / "sessions.db"
    with SQLiteStore(path) as store:
        hello = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
        store.add_messages("cheap", hello, run=run("cheap", 1))
        store.add_messages("costly", hello, run=run("costly", 2))
        store.add_messages("costly", [], run=run("costly", 3, outcome="failed", items_added=0))
        store.add_messages("unrun", hello)
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_usage_ranks_sessions_by_total_tokens(db: Path) -> None:
    result = invoke("usage", "--db", str(db))
    assert result.exit_code == 0, result.output
    header, first, second = result.output.splitlines()
    assert header.split()[:6] == ["SESSION", "RUNS", "REQUESTS", "INPUT", "OUTPUT", "TOTAL"]
    assert first.split()[:6] == ["costly", "2", "5", "500", "50", "550"]
    assert second.split()[:6] == ["cheap", "1", "1", "100", "10", "110"]
    assert invoke("usage", "--db", str(db), "--limit", "1").output.count("\n") == 2


def test_usage_of_one_session_lists_its_runs_newest_first(db: Path) -> None:
    result = invoke("usage", "costly", "--db", str(db))
    assert result.exit_code == 0, result.output
    summary, header, newest, oldest = result.output.splitlines()
    assert summary.startswith("Session 'costly': 550 tokens (500 in, 50 out, 25 cached, ")
    assert summary.endswith("in 2 runs, 5 model calls")
    assert header.split()[-1] == "OUTCOME"
    assert newest.split()[-3:] == ["330", "0", "failed"]
    assert oldest.split()[-3:] == ["220", "2", "completed"]
    assert oldest.split()[2:4] == ["Assistant", "gpt-test"]


def test_usage_json(db: Path) -> None:
    one = json.loads(invoke("usage", "costly", "--db", str(db), "--json").output)
    assert one["usage"]["total_tokens"] == 550
    assert one["usage"]["last_run_at"] == (START + timedelta(minutes=3, seconds=2)).isoformat()
    assert [r["run_id"] for r in one["runs"]] == ["costly-3", "costly-2"]
    assert one["runs"][0]["started_at"].endswith("+00:00")
    ranked = json.loads(invoke("usage", "--db", str(db), "--json").output)
    assert [(s["session_id"], s["total_tokens"]) for s in ranked] == [
        ("costly", 550),
        ("cheap", 110),
    ]


def test_sessions_show_each_sessions_tokens(db: Path) -> None:
    result = invoke("sessions", "--db", str(db))
    rows = {line.split()[0]: line.split()[1:3] for line in result.output.splitlines()[1:]}
    assert rows == {"cheap": ["2", "110"], "costly": ["2", "550"], "unrun": ["2", "0"]}
    listed = json.loads(invoke("sessions", "--db", str(db), "--json").output)
    assert {s["session_id"]: s["total_tokens"] for s in listed} == {
        "cheap": 110,
        "costly": 550,
        "unrun": 0,
    }


def test_usage_without_runs_and_bad_arguments(db: Path, tmp_path: Path) -> None:
    assert invoke("usage", "unrun", "--db", str(db)).output == (
        f"No runs recorded for session 'unrun' in {db}.\n"
    )
    SQLiteStore(tmp_path / "empty.db").close()
    assert invoke("usage", "--db", str(tmp_path / "empty.db")).output.startswith("No runs recorded")
    for args, words in [
        (("usage", ""), "a session id cannot be empty"),
        (("usage", "--limit", "0"), "--limit"),
    ]:
        result = invoke(*args, "--db", str(db))
        assert result.exit_code == 2
        assert words in result.output
        assert "Traceback" not in result.output
    missing = invoke("usage", "--db", str(tmp_path / "nowhere.db"))
    assert missing.exit_code != 0 and "Traceback" not in missing.output
