"""The benchmark harness still runs: every workload at smoke size, in a subprocess.

Timings are never asserted (CI machines are noisy); only that the run finished, wrote
its tables for every workload, and, where matplotlib is installed, its charts. Optional
competitors that are not installed are skipped by the harness itself.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")


@pytest.mark.timeout(240)
def test_smoke_run_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out),
         "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "## Targets" in results
    assert "| count | errors | median ms | p90 ms | p99 ms | max ms | spread |" in results
    for workload in WORKLOADS:
        assert f"## {workload} " in results, f"{workload} missing from RESULTS.md"
    for system in ("raw sqlite3 (limit)", "agentsession store", "agentsession memory"):
        assert f"| {system} |" in results
    assert " failed: " not in results, "a system failed; see the notes in RESULTS.md"
    assert "python -m benchmarks.run --smoke" in results
    if importlib.util.find_spec("matplotlib") is not None:
        charts = sorted(p.name for p in (out / "charts").glob("*.png"))
        assert len(charts) == len(WORKLOADS), charts


def test_help_lists_the_options() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for option in ("--quick", "--smoke", "--only", "--systems", "--out", "--synchronous"):
        assert option in completed.stdout
