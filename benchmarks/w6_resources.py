"""W6 resources: sessions used from 8 threads; how many connections and descriptors stay open.

Eight threads each read and add to every one of N sessions (N = 10, then 100), then stop
while the open connections are counted. Sync systems are shared by the threads. An async
system runs one event loop per thread (as ``Runner.run_sync`` in a threaded web server
does); it is shared by the loops where it allows that (agentsession's memory, the SDK's
``SQLiteSession``), else each thread opens its own (``AsyncSQLiteSession`` objects and
SQLAlchemy engines belong to one loop). Connections are counted from the process's open
file descriptors on the database file (one per SQLite connection), which works for every
system alike; the system's own count is shown where it has one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from ._core import Context, Driver, Result, Target, attempt, in_threads, open_driver
from ._items import turn_items
from ._report import Table, bar_chart
from ._systems import System, db_path

THREADS = 8


def descriptors(database: Path) -> tuple[int, int] | None:
    """(descriptors on the database file, on it and its -wal/-shm files), or ``None``
    where the platform cannot tell (no ``/proc/self/fd``)."""
    folder = Path("/proc/self/fd")
    if not folder.is_dir():
        return None
    main = all_files = 0
    for entry in os.listdir(folder):
        try:
            target = os.readlink(folder / entry)
        except OSError:
            continue
        if target == str(database):
            main += 1
        if target.startswith(str(database)):
            all_files += 1
    return main, all_files


async def _use(driver: Driver, sessions: int) -> None:
    for index in range(sessions):
        session_id = f"w6-{index}"
        await driver.get(session_id, 20)
        await driver.add(session_id, turn_items(index))


def measure(ctx: Context, system: System, directory: Path, sessions: int) -> dict[str, Any]:
    """Use ``sessions`` sessions from 8 threads; count what is open while they wait."""
    directory.mkdir(parents=True, exist_ok=True)
    shared_ok = not system.is_async or system.loop_safe
    shared = open_driver(system, directory, ctx.synchronous) if shared_ok else None
    own: list[Driver] = []
    done = threading.Barrier(THREADS + 1)
    release = threading.Barrier(THREADS + 1)

    def body(index: int) -> None:
        async def work() -> None:
            driver = shared
            if driver is None:
                driver = open_driver(system, directory, ctx.synchronous)
                own.append(driver)
            try:
                await _use(driver, sessions)
            finally:
                done.wait()
                release.wait()
                if shared is None:
                    await driver.close()

        asyncio.run(work())

    worker = threading.Thread(target=lambda: in_threads(THREADS, body), daemon=True)
    worker.start()
    done.wait()
    database = db_path(directory, system.layout)
    counted = descriptors(database) if system.layout else None
    drivers = [shared] if shared is not None else own
    reported = [d.connections() for d in drivers]
    figures = {
        "connections": counted[0] if counted else None,
        "descriptors": counted[1] if counted else None,
        "reported": None if None in reported else sum(r for r in reported if r is not None),
        "threads": threading.active_count(),
    }
    release.wait()
    worker.join()
    if shared is not None:
        asyncio.run(shared.close())
    return figures


def run(ctx: Context, charts: Path) -> Result:
    """Run W6 and return its table, targets and chart."""
    return asyncio.run(_run(ctx, charts))


async def _run(ctx: Context, charts: Path) -> Result:
    counts = ctx.scale.w6_sessions
    result = Result(
        "W6",
        "W6 resources",
        f"{THREADS} threads each read and add to every one of N sessions (N = "
        f"{', then '.join(map(str, counts))}), then pause while the process's open "
        "connections (descriptors on the database file, one per SQLite connection), all "
        "descriptors on the database's files, and live threads are counted.",
    )
    figures: dict[tuple[str, int], dict[str, Any]] = {}
    directory = ctx.fresh_dir("W6")

    async def one(system: System, sessions: int) -> None:
        where = directory / f"{system.key}-{sessions}"
        figures[(system.key, sessions)] = await asyncio.to_thread(
            measure, ctx, system, where, sessions
        )

    for system in ctx.systems:
        for sessions in counts:
            await attempt(ctx, f"W6 {system.label} {sessions}", result.notes, one, system, sessions)
    ctx.drop_dir(directory)
    labels = {s.key: s.label for s in ctx.systems}
    _report(result, labels, figures, counts, charts)
    return result


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _report(
    result: Result,
    labels: dict[str, str],
    figures: dict[tuple[str, int], dict[str, Any]],
    counts: tuple[int, ...],
    charts: Path,
) -> None:
    table = Table(
        f"W6 open resources with {THREADS} threads",
        ["system", "sessions", "connections", "descriptors", "reported by system",
         "live threads"],
    )  # fmt: skip
    for (key, sessions), f in figures.items():
        table.rows.append(
            [labels[key], str(sessions), _cell(f["connections"]), _cell(f["descriptors"]),
             _cell(f["reported"]), str(f["threads"])]
        )  # fmt: skip
    result.tables.append(table)
    few, many = counts[0], counts[-1]
    for key in ("store", "memory", "memory-ram"):
        small, large = figures.get((key, few)), figures.get((key, many))
        if small is None or large is None:
            continue
        field = "connections" if large["connections"] is not None else "reported"
        if key == "memory-ram":
            field = "reported"
        if large[field] is None or not small[field]:
            continue
        result.targets += [
            Target(
                "W6",
                f"connections with {many} sessions / with {few} <= 1 (not per session)",
                labels[key],
                [large[field] / small[field]],
                "<=",
                1.0,
                why=(
                    "each thread that used the store keeps one connection; with more "
                    "sessions, more calls overlapped, and the memory starts its worker "
                    "threads on demand (up to max_threads)"
                ),
                close=(
                    "nothing per session: the count follows the live threads (the next "
                    "row); a smaller max_threads bounds it"
                ),
            ),
            Target(
                "W6",
                f"connections with {many} sessions <= live threads",
                labels[key],
                [large[field] / large["threads"]],
                "<=",
                1.0,
                why="connections outlive the threads that opened them",
                close="close a thread's connection when the thread ends",
            ),
        ]
    chart = bar_chart(
        charts / "w6_resources.png",
        f"W6: open connections with {THREADS} threads (lower is better)",
        [
            (
                "connections (descriptors on the database file; log)",
                {
                    labels[k]: {
                        f"{n} sessions": float(
                            figures[(k, n)]["connections"] or figures[(k, n)]["reported"] or 0
                        )
                        for n in counts
                        if (k, n) in figures
                    }
                    for k in dict.fromkeys(k for k, _ in figures)
                },
                True,
            )
        ],
    )
    if chart is not None:
        result.charts.append(chart)
