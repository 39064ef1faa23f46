"""W7 cold start: a fresh interpreter imports the library, opens a new file, adds once.

Each run is a new ``python`` process that times, from inside, the import of the system's
module and then the first add (with its read) on a new database file, including schema
creation. The interpreter's own start-up and the harness's small imports are not counted.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ._core import Context, Result, rotate
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
    return result
