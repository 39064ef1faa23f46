"""Lint and format check, with the project's ruff settings: ``python tests/lint.py``.

ruff reads neither tox.ini nor setup.cfg, and the project keeps to those files (no
pyproject.toml or ruff.toml), so the settings live here, once; tox's lint env and the
README's test command (which CI runs) both call this script. It runs ruff with the
interpreter that runs it, so ruff must be installed there (``pip install -e '.[test]'``
does it). Exits non-zero if either check fails; both always run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["agentsession", "tests", "benchmarks", "examples"]
# The spec's example is kept exactly as the spec prints it.
EXCLUDE = ["--extend-exclude", "examples/spec_complete_example.py"]
COMMANDS = [
    ["check", "--line-length", "100", "--target-version", "py310"]
    + ["--select", "E,F,W,I,B,UP,ASYNC,C4", *EXCLUDE, *PATHS],
    ["format", "--check", "--line-length", "100", *EXCLUDE, *PATHS],
]


def main() -> int:
    failed = False
    for args in COMMANDS:
        print("+ ruff " + " ".join(args), flush=True)
        failed |= subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
