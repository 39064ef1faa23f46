"""RESULTS.md: the machine and the run, the targets, every workload's tables and charts.

Everything here is written by the run; nothing in RESULTS.md is edited by hand, so every
figure in it can be reproduced with the command it names.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sqlite3
import subprocess
import time
from pathlib import Path

from ._core import Context, Result, Target
from ._report import fmt_ratio

__all__ = ("machine", "write_results")

PACKAGES = (
    "agentsession", "openai-agents", "anyio", "sqlite-utils", "filelock",
    "aiosqlite", "sqlalchemy", "greenlet", "matplotlib", "psycopg", "psycopg-pool", "redis",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes" if dirty else "")


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    """The facts that make a figure reproducible (or explain why it is not)."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "SQLite": sqlite3.sqlite_version,
        "packages": ", ".join(versions),
        "commit": _commit(),
        "load average (1/5/15 min) at start": _load(),
    }


def _target_rows(targets: list[Target]) -> list[str]:
    rows = ["| workload | target | system | measured: median [range over rounds] | result |",
            "| --- | --- | --- | ---: | --- |"]  # fmt: skip
    for t in targets:
        if t.unit == "x":
            measured = fmt_ratio(t.ratios)
        else:
            measured = f"{t.median:g}"
        verdict = {True: "PASS", False: "**MISS**", None: "no data"}[t.passed]
        rows.append(f"| {t.workload} | {t.goal} | {t.system} | {measured} | {verdict} |")
    return rows


def _misses(targets: list[Target]) -> list[str]:
    lines: list[str] = []
    for t in targets:
        if t.passed is False:
            lines.append(
                f"- **{t.workload}, {t.system}: {t.goal}.** Measured {t.shortfall()}. "
                f"What the code does and the figures show: {t.why}. What would close it: "
                f"{t.close}."
            )
    return lines


def _closing(targets: list[Target], mode: str) -> list[str]:
    fixes: dict[str, list[str]] = {}
    for t in targets:
        if t.passed is False:
            fixes.setdefault(t.close, []).append(f"{t.workload} {t.goal} ({t.system})")
    lines = ["## Closing note", ""]
    passed = sum(t.passed is True for t in targets)
    lines.append(f"{passed} of {len(targets)} targets met in this {mode} run.")
    if mode != "full":
        lines.append(
            f"This was a **{mode}** run: small sizes and few rounds, to check the harness, "
            "not to judge the targets. Run `python -m benchmarks.run` on a quiet machine "
            "for the figures that count."
        )
    if fixes:
        lines += ["", "What would close the misses:", ""]
        for fix, which in fixes.items():
            lines.append(f"- {fix[0].upper()}{fix[1:]}: closes {'; '.join(which)}.")
    return lines


def write_results(
    path: Path,
    ctx: Context,
    results: list[Result],
    facts: dict[str, str],
    command: str,
    seconds: float,
) -> Path:
    """Write RESULTS.md to ``path`` (charts are referenced relative to it)."""
    targets = [t for r in results for t in r.targets]
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# agentsession benchmarks",
        "",
        f"Written by `{command}` on {now} ({ctx.mode} mode, {seconds:.0f} s). Do not edit: "
        "run the command again to reproduce every figure.",
        "",
        "## Machine and run",
        "",
        "| | |",
        "| --- | --- |",
    ]
    facts = {**facts, "load average (1/5/15 min) at end": _load()}
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    lines += [
        f"| command | `{command}` |",
        f"| durability | every system in WAL mode at `synchronous={ctx.synchronous}`: the "
        "level the SDK's sessions get (they set only WAL, so they run at this SQLite "
        "build's default), and the level agentsession and raw sqlite3 are given |",
        f"| sizes ({ctx.mode}) | {ctx.scale} |",
        "",
        "How to read the tables: latencies in milliseconds as median, p90, p99 and max "
        "(never averages); *spread* is the interquartile range over the median. Warm-up "
        "calls are dropped. Every workload runs in a fresh temporary directory, systems in "
        "a different order each round, and a ratio is computed per round and shown as its "
        "median with the range over rounds. The garbage collector stays on, but the "
        "objects alive after set-up are frozen (`gc.freeze()`), so a collection that lands "
        "in a measured call costs what the system allocated, not a 100 ms walk over the "
        "imported SDK. Sync systems (agentsession's store, raw sqlite3) are driven from "
        "threads; async ones (agentsession's memory, the SDK's sessions) from tasks on one "
        "event loop. The memory runs each store call in a thread of its own pool (one "
        "thread hop per call) and the store on the calling thread, so the memory row "
        "differs from the store row by that hop and by being driven from tasks.",
        "",
        "## Targets",
        "",
        *_target_rows(targets),
        "",
    ]
    missed = _misses(targets)
    if missed:
        lines += ["### Missed targets: by how much, and what is known about them", "", *missed, ""]
    for result in results:
        lines += [f"## {result.title}", "", result.summary, ""]
        for table in result.tables:
            lines += [table.markdown(), ""]
        for chart in result.charts:
            relative = os.path.relpath(chart, path.parent)
            lines += [f"![{result.title}]({relative})", ""]
        for note in result.notes:
            lines += [f"- {note}"]
        if result.notes:
            lines.append("")
    lines += _closing(targets, ctx.mode)
    lines += _kept_sections(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_SECTION = re.compile(r"^<!-- section: [\w-]+ -->$.*?^<!-- /section: [\w-]+ -->$", re.M | re.S)


def _kept_sections(path: Path) -> list[str]:
    """The sections other workloads wrote (``benchmarks.encryption``), kept as they were."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    return [line for found in _SECTION.findall(text) for line in ["", *found.splitlines()]]
