"""Commands that run no model start without importing the Agents SDK.

Importing ``agents`` takes over a second; ``sessions``, ``show``, ``--version`` and the
other commands that only read or change a database must not pay it, nor the tenth of a
second of sqlite-utils (with numpy), which only a schema migration needs. Each command runs in
one fresh interpreter, in turn, and ``sys.modules`` is checked after each one, so the
first command that pulls the SDK in is named. (How fast they start is measured in
``benchmarks/w7_cold.py``, not asserted here.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agentsession import SQLiteStore

_CHILD = """
import json, sys
from click.testing import CliRunner
from agentsession.cli import cli

failures = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(cli, args, input="y\\n")
    if result.exit_code != 0:
        failures.append([args, "exit code %d: %s" % (result.exit_code, result.output)])
    elif "agents" in sys.modules:
        failures.append([args, "imported the Agents SDK"])
        break
    elif "sqlite_utils" in sys.modules:
        failures.append([args, "imported sqlite-utils (needed only to migrate a schema)"])
        break
print(json.dumps(failures))
"""


def test_commands_that_run_no_model_do_not_import_the_sdk(tmp_path: Path) -> None:
    db = str(tmp_path / "sessions.db")
    export = str(tmp_path / "export.jsonl")
    with SQLiteStore(db) as store:
        store.add_messages("s1", [{"role": "user", "content": "hello there"}])
        store.add_messages("s1", [{"role": "assistant", "content": "hi"}])
    commands = [
        ["--version"],
        ["--help"],
        ["sessions", "--db", db],
        ["show", "s1", "--db", db],
        ["search", "hello", "--db", db],
        ["meta", "s1", "topic=greeting", "--db", db],
        ["fork", "s1", "s2", "--db", db],
        ["export", export, "--db", db, "--session", "s2"],
        ["clear", "s2", "--yes", "--db", db],
        ["import", export, "--db", db],
        ["rewind", "s2", "--yes", "--db", db],
        ["prune", "--keep-last", "1", "--yes", "--db", db],
        ["vacuum", "--db", db],
        ["usage", "--db", db],
        ["clear", "s1", "--yes", "--db", db],
    ]
    output = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(output) == []
