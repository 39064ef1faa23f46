"""W7 cold start: a fresh interpreter imports the library, opens a new file, adds once.

Each run is a new ``python`` process that times, from inside, the import of the system's
module and then the first add (with its read) on a new database file, including schema
creation. The interpreter's own start-up and the harness's small imports are not counted.

With agentsession's store among the systems, W7 also times the command line's start, from
outside and whole (interpreter included): ``agentsession --version`` and ``agentsession
sessions`` on a small database, commands that run no model and so must not import the
Agents SDK (target: under 0.3 s).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._core import Context, Result, Target, rotate
from ._report import Table, bar_chart, stats_columns, stats_row, summarize

MODULES = {
    "raw": "sqlite3",
    "store": "agentsession",
    "memory": "agentsession",
    "sdk": "agents",
    "sdk-async": "agents.extensions.memory.async_sqlite_session",
    "sdk-sqlalchemy": "agents.extensions.memory.sqlalchemy_session",
}

_CHILD = """
import asyncio, importlib, json, sys, time
from pathlib import Path
from benchmarks._core import open_driver
from benchmarks._items import turn_items
from benchmarks._systems import SYSTEMS

key, module, directory, synchronous = sys.argv[1:5]
system = next(s for s in SYSTEMS if s.key == key)
start = time.perf_counter()
importlib.import_module(module)
imported = time.perf_counter()

async def first_add():
    driver = open_driver(system, Path(directory), synchronous)
    await driver.get("w7", None)
    await driver.add("w7", turn_items(0))
    done = time.perf_counter()
    await driver.close()
    return done

done = asyncio.run(first_add())
print(json.dumps({"import": imported - start, "first_add": done - imported}))
"""


def cold_start(key: str, synchronous: str, root: Path) -> dict[str, float]:
    """One fresh process: seconds to import, and to open a new file and add once."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(dir=root) as directory:
        output = subprocess.run(
            [sys.executable, "-c", _CHILD, key, MODULES[key], directory, synchronous],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


#: The command line's start target, in seconds (a command that runs no model).
CLI_TARGET = 0.3

#: Commands timed from a fresh process: (what the table calls it, its arguments).
CLI_COMMANDS = (("--version", ["--version"]), ("sessions", ["sessions"]))


def cli_start(args: list[str], database: Path) -> float:
    """Seconds for one fresh ``python -m agentsession ARGS --db`` process to finish."""
    if args != ["--version"]:
        args = [*args, "--db", str(database)]
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("OPENAI_API_KEY", None)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "agentsession", *args],
        capture_output=True,
        timeout=120,
        check=True,
        env=env,
    )
    return time.perf_counter() - start


def _cli_table(ctx: Context, result: Result) -> None:
    """Time the command line's start and add its table and target to ``result``."""
    from agentsession import SQLiteStore

    database = ctx.fresh_dir("w7-cli") / "sessions.db"
    with SQLiteStore(database) as store:
        store.add_messages("w7", [{"role": "user", "content": "hello"}])
    samples: dict[str, list[float]] = {name: [] for name, _ in CLI_COMMANDS}
    for _ in range(max(3, ctx.scale.w7_runs)):
        for name, args in CLI_COMMANDS:
            samples[name].append(cli_start(args, database))
    table = Table("W7 command-line start (whole process)", stats_columns())
    for name, values in samples.items():
        table.rows.append(stats_row(f"agentsession {name}", "start to exit", summarize(values)))
    result.tables.append(table)
    for name, values in samples.items():
        result.targets.append(
            Target(
                "W7",
                f"agentsession {name} starts and exits in under {CLI_TARGET} s",
                "agentsession CLI",
                [round(statistics.median(values), 3)],
                "<=",
                CLI_TARGET,
                why="commands that run no model import neither the Agents SDK nor "
                "sqlite-utils (imported only to migrate a schema); what is left is the "
                "interpreter, click and the SQLite store",
                close="finding what the start imports with `python -X importtime -m "
                "agentsession --version` and loading it on first use",
                unit="s",
            )
        )


def run(ctx: Context, charts: Path) -> Result:
    """Run W7 and return its table and chart."""
    systems = [s for s in ctx.systems if s.key in MODULES]
    result = Result(
        "W7",
        "W7 cold start",
        f"{ctx.scale.w7_runs} fresh process(es) per system, in rotating order: import the "
        "system's module, then open a new database file, read the (empty) session and add "
        "2 items. Times are measured inside the process, so the interpreter's own start-up "
        "(the same for all) is left out; `sqlite3` is already imported by then, so raw "
        "sqlite3's import is about zero.",
    )
    samples: dict[str, dict[str, list[float]]] = {}
    for run_index in range(ctx.scale.w7_runs):
        for system in rotate(systems, run_index):
            try:
                figures = cold_start(system.key, ctx.synchronous, ctx.root)
            except (subprocess.SubprocessError, ValueError) as exc:
                stderr = getattr(exc, "stderr", "") or ""
                message = f"W7 {system.label} failed: {exc} {stderr[-500:]}"
                ctx.log("  ! " + message)
                result.notes.append(message)
                continue
            per = samples.setdefault(system.key, {"import": [], "first_add": [], "total": []})
            per["import"].append(figures["import"])
            per["first_add"].append(figures["first_add"])
            per["total"].append(figures["import"] + figures["first_add"])
    labels = {s.key: s.label for s in systems}
    table = Table("W7 cold start", stats_columns())
    for key, per in samples.items():
        for what, values in per.items():
            name = {"import": "import", "first_add": "first add", "total": "import + first add"}
            table.rows.append(stats_row(labels[key], name[what], summarize(values)))
    result.tables.append(table)
    chart = bar_chart(
        charts / "w7_cold_start.png",
        "W7 cold start (lower is better)",
        [
            (
                "ms (median)",
                {
                    labels[k]: {
                        "import": statistics.median(v["import"]) * 1000,
                        "first add": statistics.median(v["first_add"]) * 1000,
                    }
                    for k, v in samples.items()
                },
                False,
            )
        ],
    )
    if chart is not None:
        result.charts.append(chart)
    if any(s.key == "store" for s in systems):
        _cli_table(ctx, result)
    return result
