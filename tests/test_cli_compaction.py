"""``agentsession compact | uncompact`` and ``show --archived``, through click's CliRunner.

The offline model writes the summary (no key, no network), so the output is fixed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agentsession import SQLiteStore
from agentsession.cli import cli


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


TURNS = [
    user("Tell me about the Golden Gate Bridge"),
    assistant("A bridge."),
    user("How long is it?"),
    assistant("2.7 km."),
    user("When did it open?"),
    assistant("1937."),
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("AGENTSESSION_DB", "AGENTSESSION_MODEL", "AGENTSESSION_KEY")
    for name in (*names, "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.db"
    with SQLiteStore(path) as store:
        store.add_messages("trip", TURNS)
    return path


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_compact_show_and_uncompact(db: Path) -> None:
    result = run("compact", "trip", "--keep-turns", "1", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Compacted 'trip': 4 messages summarised by the offline model and archived, 2 kept; "
        f"about {_tokens(db)[0]} tokens down to {_tokens(db)[1]}.\n"
    )
    with SQLiteStore(db) as store:
        assert store.get_messages("trip")[1:] == TURNS[4:]

    shown = run("show", "trip", "--db", str(db)).output
    assert "Summary of earlier turns: Offline summary of 4 items" in shown
    assert "Golden Gate" in shown  # quoted by the summary, not as a user message
    assert "User: Tell me about" not in shown

    archived = run("show", "trip", "--archived", "--db", str(db)).output
    lines = archived.splitlines()[1:]
    assert [line.endswith("(archived)") for line in lines] == [True] * 4 + [False] * 2
    assert "User: Tell me about the Golden Gate Bridge (archived)" in lines[0]
    as_json = run("show", "trip", "--archived", "--json", "--db", str(db)).output
    assert json.loads(as_json) == TURNS

    usage = json.loads(run("usage", "trip", "--json", "--db", str(db)).output)
    assert [entry["agent"] for entry in usage["runs"]] == ["agentsession compaction"]

    result = run("uncompact", "trip", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Uncompacted 'trip': 4 archived messages put back, the summary removed.\n"
    )
    with SQLiteStore(db) as store:
        assert store.get_messages("trip") == TURNS


def _tokens(db: Path) -> tuple[int, int]:
    with SQLiteStore(db) as store:
        (record,) = store.compactions("trip")
    return record.tokens_before, record.tokens_after


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["compact", "trip", "--keep-turns", "3"],
            1,
            "Error: session 'trip' has nothing to compact: it holds 3 turns or fewer "
            "(--keep-turns 3)\n",
        ),
        (["compact", "nope"], 1, "Error: no session 'nope' in "),
        (["uncompact", "trip"], 1, "Error: session 'trip' has no compaction to undo\n"),
        (["uncompact", "nope"], 1, "Error: no session 'nope' in "),
        (["compact", "trip", "--model", "gpt-x"], 2, "needs OPENAI_API_KEY set"),
    ],
)
def test_errors_are_one_line_in_flag_words(
    db: Path, args: list[str], code: int, message: str
) -> None:
    result = run(*args, "--db", str(db))
    assert result.exit_code == code
    assert message in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.output.strip().endswith(errors[0])  # one line, last
    with SQLiteStore(db) as store:
        assert store.get_messages("trip") == TURNS


def test_keep_turns_must_be_positive(db: Path) -> None:
    result = run("compact", "trip", "--keep-turns", "0", "--db", str(db))
    assert result.exit_code == 2 and "--keep-turns" in result.output


def test_a_failing_model_is_one_line_and_changes_nothing(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.responses_server import ResponsesServer

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with ResponsesServer() as server:  # a path it does not serve: 404 from a real server
        result = run(
            "compact",
            "trip",
            "--model",
            "gpt-x",
            "--base-url",
            server.base_url + "/nowhere",
            "--db",
            str(db),
        )
    assert result.exit_code == 1
    assert result.output.startswith("Error: the model call failed: NotFoundError")
    assert len(result.output.strip().splitlines()) == 1
    with SQLiteStore(db) as store:
        assert store.get_messages("trip") == TURNS
        (run_record,) = store.runs("trip")
    assert (run_record.agent, run_record.outcome) == ("agentsession compaction", "failed")


def test_compact_with_the_offline_model_prints_one_line_and_sends_no_trace(db: Path) -> None:
    """The SDK exports traces of every run unless told not to, and says so on stderr when
    it has no key; the offline model's summary is not OpenAI's to trace (as the chat's)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AGENTSESSION_DB")}
    done = subprocess.run(
        [sys.executable, "-m", "agentsession", "compact", "trip", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Compacted 'trip'") and done.stdout.count("\n") == 1
    assert done.stderr == ""
