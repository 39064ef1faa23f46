"""Commands that change a session wait for the run holding it, from another process.

A second process plays a chat replying on session "chat": it holds the session's run lease
(as every run does) until told to store its turn and let go. ``clear`` and ``rewind``,
run meanwhile as separate ``agentsession`` processes, must say they are waiting and act
only once the turn is stored whole, or fail at once with ``--no-wait``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agentsession import SQLiteStore
from agentsession.cli import cli

FIRST_TURN = [{"role": "user", "content": "first?"}, {"role": "assistant", "content": "one"}]
RUN_TURN = [{"role": "user", "content": "second?"}, {"role": "assistant", "content": "two"}]

_RUN = """
import json, sys
from agentsession import SQLiteStore

store = SQLiteStore(sys.argv[1])
assert store.try_lock("chat", "a-run", 60)
print("holding", flush=True)
sys.stdin.readline()
store.add_messages("chat", json.loads(sys.argv[2]))
store.unlock("chat", "a-run")
store.close()
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.db"
    with SQLiteStore(path) as store:
        store.add_messages("chat", FIRST_TURN)
    return path


@pytest.fixture
def run(db: Path) -> Iterator[subprocess.Popen[str]]:
    """A run in another process, holding session "chat" until a line is written to it."""
    process = subprocess.Popen(
        [sys.executable, "-c", _RUN, str(db), json.dumps(RUN_TURN)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "holding\n"
    yield process
    process.kill()
    process.wait(10)


def _messages(db: Path) -> Any:
    with SQLiteStore(db) as store:
        return store.get_messages("chat") if store.session_info("chat") else None


def _compacted(db: Path) -> Any:
    """The session with its compaction undone, once it is seen to be compacted."""
    with SQLiteStore(db) as store:
        (record,) = store.compactions("chat")
        assert (record.compacted_items, record.kept_items) == (2, 2)
        store.uncompact("chat")
        return store.get_messages("chat")


@pytest.mark.parametrize(
    ("command", "after"),
    [
        (["clear", "chat", "--yes"], None),
        (["rewind", "chat", "--yes"], FIRST_TURN),
        # Compacts the run's turn too (waited for): the first turn is archived.
        (["compact", "chat", "--keep-turns", "1", "--model", "offline"], "compacted"),
    ],
)
def test_a_command_waits_for_the_run_then_acts_on_its_whole_turn(
    db: Path, run: subprocess.Popen[str], command: list[str], after: Any
) -> None:
    waiting = subprocess.Popen(
        [sys.executable, "-m", "agentsession", *command, "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert waiting.stderr is not None
    assert waiting.stderr.readline() == (  # the run's own pid, found though its owner says none
        f"Waiting for session 'chat', held by another run (pid {run.pid} on host "
        f"{socket.gethostname()}); Ctrl-C to give up.\n"
    )
    assert run.stdin is not None
    run.stdin.write("go\n")  # the run stores its turn and lets go
    run.stdin.flush()
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert run.wait(10) == 0
    if after == "compacted":
        assert _compacted(db) == FIRST_TURN + RUN_TURN
    else:
        assert _messages(db) == after


@pytest.mark.parametrize(
    "command",
    [
        ["clear", "chat", "--yes"],
        ["rewind", "chat", "--yes"],
        ["compact", "chat", "--keep-turns", "1", "--model", "offline"],
        ["uncompact", "chat"],
    ],
)
def test_no_wait_fails_at_once_and_changes_nothing(
    db: Path, run: subprocess.Popen[str], command: list[str]
) -> None:
    result = CliRunner().invoke(cli, [*command, "--no-wait", "--db", str(db)])
    assert result.exit_code == 1
    assert f"session 'chat' is in use by a run (pid {run.pid} on host " in result.output
    assert "Traceback" not in result.output
    assert _messages(db) == FIRST_TURN


def test_fork_no_wait_fails_while_a_run_holds_the_source(
    db: Path, run: subprocess.Popen[str]
) -> None:
    result = CliRunner().invoke(cli, ["fork", "chat", "copy", "--no-wait", "--db", str(db)])
    assert result.exit_code == 1 and "in use by a run" in result.output
