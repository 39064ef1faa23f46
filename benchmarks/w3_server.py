"""W3 web server: 8 concurrent workers, each its own session, turns of (newest 50, add 2).

Workers are threads for sync systems and tasks on one event loop for async ones. W3b then
measures one reader's newest-50 latency alone, and again while 7 writers add to their own
sessions as fast as they can, counting the writers' adds meanwhile: the SDK's
``SQLiteSession`` holds one process-wide lock per file around every call, so its reader
queues behind the writers' commits; agentsession's writers of one process share a group
commit (``agentsession.stores.sqlite.writer``) and its readers take no lock.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from ._core import (
    Context,
    Driver,
    Gate,
    Result,
    Target,
    attempt,
    close_all,
    fill,
    open_all,
    rotate,
    run_workers,
    settle,
    timed,
    unsettle,
)
from ._items import turn_items
from ._report import (
    Table,
    bar_chart,
    fmt_ms,
    fmt_ratio,
    percentile,
    stats_columns,
    stats_row,
    summarize,
)

WORKERS = 8
WINDOW = 50
READER = "w3b-reader"


async def _turns(driver: Driver, session_id: str, turns: int) -> tuple[list[float], list[float]]:
    """Run turns on a new session; return (turn costs, read costs) in seconds."""
    costs: list[float] = []
    reads: list[float] = []
    for turn in range(turns):
        start = timed()
        history = await driver.get(session_id, WINDOW)
        middle = timed()
        await driver.add(session_id, turn_items(turn))
        costs.append(timed() - start)
        reads.append(middle - start)
        assert len(history) == min(2 * turn, WINDOW), f"read {len(history)} items"
    return costs, reads


async def server_round(driver: Driver, turns: int, tag: str) -> tuple[float, list[float]]:
    """One W3 round: return (turns per second, every turn's cost)."""

    async def worker(index: int, gate: Gate) -> tuple[float, float, list[float]]:
        await _turns(driver, f"w3-{tag}-{index}-warmup", 3)
        await gate.wait()
        start = timed()
        costs, _ = await _turns(driver, f"w3-{tag}-{index}", turns)
        return start, timed(), costs

    results = await run_workers(driver, WORKERS, worker)
    wall = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    return WORKERS * turns / wall, [c for _, _, costs in results for c in costs]


async def _pause(driver: Driver) -> None:
    if driver.in_thread:  # a worker thread's own loop runs nothing else: block it
        time.sleep(0.0005)  # noqa: ASYNC251
    else:
        await asyncio.sleep(0.0005)


async def reader_round(
    driver: Driver, reads: int, tag: str
) -> tuple[list[float], list[float], float]:
    """One W3b round: the reader's latencies alone, then under 7 writers, and the writers'
    turns/s (adds of 2 items; each writer's steady rate while the reader read, summed)."""

    async def read(count: int) -> list[float]:
        samples: list[float] = []
        for _ in range(count):
            start = timed()
            items = await driver.get(READER, WINDOW)
            samples.append(timed() - start)
            assert len(items) == WINDOW
        return samples

    async def alone(index: int, gate: Gate) -> list[float]:
        await gate.wait()
        return await read(reads)

    unloaded = (await run_workers(driver, 1, alone))[0]
    stop = threading.Event()
    started = itertools.count()
    running = [0]

    window: list[float] = []  # when the reader started, under the writers

    async def worker(index: int, gate: Gate) -> Any:
        await gate.wait()
        if index == 0:
            # Start once the writers are committing (waiting for all 7 to have committed
            # could take seconds where a busy handler lets some writers starve).
            while running[0] < 1:
                await _pause(driver)
            window.append(timed())
            try:
                return await read(reads)
            finally:
                stop.set()
        session_id = f"w3b-{tag}-writer-{index}"
        await driver.add(session_id, turn_items(0))
        running[0] = next(started) + 1
        turn = 1
        ends: list[float] = []  # when each add returned
        while not stop.is_set():
            await driver.add(session_id, turn_items(turn))
            ends.append(timed())
            turn += 1
        return ends

    results = await run_workers(driver, WORKERS, worker)
    # Each writer's steady rate while the reader read: its adds between the first and the
    # last that returned after the reader started, over that time (so a writer's start-up,
    # which a short reader would otherwise mostly measure, is left out); summed.
    start = window[0]
    rate = 0.0
    for done in results[1:]:
        ends = [t for t in done if t >= start]
        if len(ends) >= 2 and ends[-1] > ends[0]:
            rate += (len(ends) - 1) / (ends[-1] - ends[0])
    return unloaded, results[0], rate if rate > 0 else math.nan


def run(ctx: Context, charts: Path) -> Result:
    """Run W3 and W3b and return their tables, targets and chart."""
    return asyncio.run(_run(ctx, charts))


async def _run(ctx: Context, charts: Path) -> Result:
    scale = ctx.scale
    result = Result(
        "W3",
        "W3 web server",
        f"W3: {WORKERS} concurrent workers (threads for sync systems, tasks for async "
        f"ones), each its own session, {scale.w3_turns} turns of (newest {WINDOW}, add 2); "
        f"throughput is all turns over the wall time. W3b: one reader reads the newest "
        f"{WINDOW} of a {scale.w3b_history:,}-item session {scale.w3b_reads} times alone, "
        f"then again while {WORKERS - 1} writers add 2 items at a time to their own "
        f"sessions without pause; the writers' turns/s is the sum of each writer's rate of "
        f"adds (2 items each) between its first and its last add that returned after the "
        f"reader started (the writers stop when the reader is done). {scale.rounds} "
        "round(s), systems in rotating order.",
    )
    directory = ctx.fresh_dir("W3")
    drivers = await open_all(
        ctx, directory, result.notes, lambda d: fill(d, READER, scale.w3b_history)
    )
    settle()
    throughput: dict[str, list[float]] = {}
    turns: dict[tuple[str, str], list[list[float]]] = {}
    reader: dict[tuple[str, str], list[list[float]]] = {}
    writers: dict[str, list[float]] = {}  # W3b: the writers' turns/s under the reader

    async def one(driver: Driver, round_index: int) -> None:
        key = driver.system.key
        rate, costs = await server_round(driver, scale.w3_turns, f"r{round_index}")
        throughput.setdefault(key, []).append(rate)
        turns.setdefault((key, "turn"), []).append(costs)
        unloaded, loaded, rate = await reader_round(driver, scale.w3b_reads, f"r{round_index}")
        reader.setdefault((key, "alone"), []).append(unloaded)
        reader.setdefault((key, "under 7 writers"), []).append(loaded)
        writers.setdefault(key, []).append(rate)

    for round_index in range(scale.rounds):
        for system in rotate([s for s in ctx.systems if s.key in drivers], round_index):
            driver = drivers[system.key]
            await attempt(ctx, f"W3 {system.label}", result.notes, one, driver, round_index)
        ctx.log(f"  W3 round {round_index + 1}/{scale.rounds} done")
    unsettle()
    await close_all(drivers)
    ctx.drop_dir(directory)

    labels = {s.key: s.label for s in ctx.systems}
    _report(result, labels, throughput, turns, reader, writers, charts)
    return result


def _report(
    result: Result,
    labels: dict[str, str],
    throughput: dict[str, list[float]],
    turns: dict[tuple[str, str], list[list[float]]],
    reader: dict[tuple[str, str], list[list[float]]],
    writers: dict[str, list[float]],
    charts: Path,
) -> None:
    summary = Table(
        "W3 throughput and W3b reader slowdown (median over rounds [range])",
        ["system", "turns/s", "W3b reader: loaded / alone median", "W3b writers' turns/s"],
    )
    slowdown: dict[str, list[float]] = {}
    for key, rates in throughput.items():
        alone = reader.get((key, "alone"), [])
        loaded = reader.get((key, "under 7 writers"), [])
        slowdown[key] = [
            statistics.median(b) / statistics.median(a) for a, b in zip(alone, loaded, strict=False)
        ]
        written = [w for w in writers.get(key, []) if not math.isnan(w)]
        summary.rows.append(
            [labels[key], fmt_ms(statistics.median(rates)), fmt_ratio(slowdown[key]),
             fmt_ms(statistics.median(written)) if written else "-"]
        )  # fmt: skip
    latency = Table("W3 turn cost and W3b reader latency (rounds pooled)", stats_columns())
    for (key, kind), per_round in [*turns.items(), *reader.items()]:
        what = "W3 turn" if kind == "turn" else f"W3b read 50, {kind}"
        latency.rows.append(stats_row(labels[key], what, summarize(sum(per_round, []))))
    result.tables += [summary, latency]

    def rate(key: str, rates: dict[str, list[float]]) -> str:
        known = [r for r in rates.get(key, []) if not math.isnan(r)]
        return f"{labels[key]} {statistics.median(known):.0f}" if known else ""

    def figures(keys: tuple[str, ...], rates: dict[str, list[float]]) -> str:
        return ", ".join(f for f in (rate(k, rates) for k in keys) if f)

    result.targets += _turn_targets(turns, labels)
    for key in ("store", "memory"):
        ours = throughput.get(key)
        if ours is None:
            continue
        measured = figures((key, "sdk", "raw", "raw-locked"), throughput)
        for ref, limit in (("sdk", 1.0), ("raw", 1.5)):
            theirs = throughput.get(ref)
            if theirs is None:
                continue
            result.targets.append(
                Target(
                    "W3",
                    f"throughput: {labels[ref]} turns/s / ours <= {limit:g}",
                    labels[key],
                    [t / o for t, o in zip(theirs, ours, strict=False)],
                    "<=",
                    limit,
                    why=f"turns/s (median over rounds): {measured}. {WRITE_PATH}",
                    close=WRITE_PATH_CLOSE,
                )
            )
        sdk = throughput.get("sdk")
        if sdk is not None:
            result.targets.append(
                Target(
                    "W3",
                    "throughput: ours / SDK SQLiteSession turns/s >= 2",
                    labels[key],
                    [o / t for o, t in zip(ours, sdk, strict=False)],
                    ">=",
                    2.0,
                    why=f"turns/s (median over rounds): {measured}. {WRITE_PATH}",
                    close=WRITE_PATH_CLOSE,
                )
            )
    for key in ("store", "memory", "memory-ram"):
        if key in slowdown:
            alone = summarize(sum(reader.get((key, "alone"), []), [])).median
            loaded = summarize(sum(reader.get((key, "under 7 writers"), []), [])).median
            raw = (
                f"; raw sqlite3's reader: {fmt_ratio(slowdown['raw'])}" if "raw" in slowdown else ""
            )
            hop = (
                "; each of the memory's reads and adds runs in a thread of the memory's own "
                "pool (one hop per call), so the reader's calls and the writers' share it and "
                "the one event loop"
                if key.startswith("memory")
                else ""
            )
            result.targets.append(
                Target(
                    "W3b",
                    "reader median under 7 writers <= 1.5x alone",
                    labels[key],
                    slowdown[key],
                    "<=",
                    1.5,
                    why=(
                        f"the reader's median is {alone:.3f} ms alone and {loaded:.3f} ms under "
                        "7 writers (rounds pooled); its read is one indexed query "
                        + (
                            "on the one connection of the private ':memory:' database, which "
                            "the reader and the writers take turns on"
                            if key == "memory-ram"
                            else "on its own connection, which in WAL mode takes no lock the "
                            "writers hold"
                        )
                        + raw
                        + hop
                    ),
                    close=(
                        "profile a loaded read: time in the query against time waiting for "
                        "the GIL"
                        + (", the memory's thread pool and the event loop" if hop else "")
                        + "; compare the raw sqlite3 row, which runs the same query"
                    ),
                )
            )
    sdk_writers = writers.get("sdk")
    for key in ("store", "memory"):
        ours = writers.get(key)
        if ours is None or sdk_writers is None:
            continue
        result.targets.append(
            Target(
                "W3b",
                "writers' turns/s under the reader / SDK SQLiteSession writers' turns/s >= 1",
                labels[key],
                [o / t if t > 0 else math.nan for o, t in zip(ours, sdk_writers, strict=False)],
                ">=",
                1.0,
                why=f"the 7 writers' turns/s from the reader's start (median over rounds): "
                f"{figures((key, 'sdk', 'raw'), writers)}. {WRITE_PATH}",
                close=WRITE_PATH_CLOSE,
            )
        )
    chart = bar_chart(
        charts / "w3_web_server.png",
        "W3 web server and W3b reader under writers",
        [
            (
                "W3 turns/s (higher is better)",
                {labels[k]: {"turns/s": statistics.median(v)} for k, v in throughput.items()},
                False,
            ),
            (
                "W3b reader median, ms (log)",
                {
                    labels[k]: {
                        kind: summarize(sum(reader[(k, kind)], [])).median
                        for kind in ("alone", "under 7 writers")
                    }
                    for k in throughput
                    if (k, "alone") in reader
                },
                True,
            ),
        ],
    )
    if chart is not None:
        result.charts.append(chart)


#: What agentsession's write path does (``agentsession.stores.sqlite.writer``).
WRITE_PATH = (
    "agentsession's adds of one process go through one group-commit writer per file: "
    "while one transaction commits, the adds that arrive queue, and the next leader runs "
    "them all in one BEGIN IMMEDIATE transaction, each in a savepoint, with one COMMIT (one "
    "fsync at synchronous=FULL); an add is an UPSERT ... RETURNING of the session row and "
    "one INSERT of its messages, its JSON encoded and checked before the transaction; "
    "raw sqlite3 runs one BEGIN IMMEDIATE transaction per add"
)
WRITE_PATH_CLOSE = (
    "profile one round: how many adds each group commit holds (the writer's works / "
    "groups), the time per transaction against raw sqlite3's, and the time outside the "
    "transaction (encoding, the JSON check, for the memory the thread hop)"
)


def _turn_targets(
    turns: dict[tuple[str, str], list[list[float]]], labels: dict[str, str]
) -> list[Target]:
    """Turn cost: median and p99 no worse than the SDK's, median within 1.5x of raw."""

    def per_round(key: str, share: float) -> list[float]:
        return [percentile(sorted(r), share) for r in turns.get((key, "turn"), [])]

    def pooled(key: str, share: float) -> float:
        return percentile(sorted(sum(turns.get((key, "turn"), []), [])), share)

    def figures(key: str, ref: str, share: float) -> str:
        stat = "median" if share == 0.5 else "p99"
        shown = [k for k in (key, ref, "raw", "raw-locked") if (k, "turn") in turns]
        listed = ", ".join(
            f"{labels[k]} {pooled(k, share) * 1000:.2f} ms" for k in dict.fromkeys(shown)
        )
        return f"turn {stat} (rounds pooled): {listed}"

    hop = (
        "; the memory runs each read and each add in a thread of its own pool (two hops a "
        "turn), and its eight workers are tasks on one event loop, so a turn also includes "
        "the wait for the loop to take up the thread's result (compare the store row)"
    )
    targets: list[Target] = []
    for key in ("store", "memory"):
        if (key, "turn") not in turns:
            continue
        for ref, share, limit in (("sdk", 0.5, 1.0), ("sdk", 0.99, 1.0), ("raw", 0.5, 1.5)):
            if (ref, "turn") not in turns:
                continue
            ratios = [
                o / t for o, t in zip(per_round(key, share), per_round(ref, share), strict=False)
            ]
            stat = "median" if share == 0.5 else "p99"
            why = (
                f"{figures(key, ref, share)}. A turn is a newest-{WINDOW} read (one indexed "
                f"query, no lock) and an add. {WRITE_PATH}" + (hop if key == "memory" else "")
            )
            targets.append(
                Target("W3", f"turn {stat} <= {limit:g}x {labels[ref]}", labels[key], ratios,
                       "<=", limit, why=why, close=WRITE_PATH_CLOSE)
            )  # fmt: skip
    return targets
