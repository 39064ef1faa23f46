"""W2 windowed read: one 10,000-item session; newest-20 reads and full reads.

Each round reads the same session newest-20 many times and in full a few times, system
after system in rotating order; per-round medians and p99s give the ratios.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ._core import (
    Context,
    Driver,
    Result,
    Target,
    attempt,
    close_all,
    fill,
    open_all,
    rotate,
    settle,
    timed,
    unsettle,
)
from ._report import Table, bar_chart, percentile, stats_columns, stats_row, summarize

NEWEST = 20
SESSION = "w2-long"
KINDS = ("newest 20", "full")

_HOP_WHY = (
    "the async memory runs every call on a worker thread (anyio.to_thread), a fixed hop "
    "of {hop:.3f} ms here (memory median minus store median) against {raw:.3f} ms for "
    "the raw sqlite3 {kind}; the blocking store, with no hop, is at {store:.2f}x raw"
)
_HOP_CLOSE = (
    "a hop-free path for small reads: run a windowed read (an index range scan of a few "
    "rows, ~0.05 ms) inline on the event loop instead of on a worker thread"
)


async def _reads(driver: Driver, limit: int | None, count: int, expect: int) -> list[float]:
    samples: list[float] = []
    for _ in range(count):
        start = timed()
        items = await driver.get(SESSION, limit)
        samples.append(timed() - start)
        assert len(items) == expect, f"read {len(items)} items, not {expect}"
    return samples


def run(ctx: Context, charts: Path) -> Result:
    """Run W2 and return its tables, targets and chart."""
    return asyncio.run(_run(ctx, charts))


async def _run(ctx: Context, charts: Path) -> Result:
    size = ctx.scale.w2_items
    rounds = ctx.scale.rounds
    result = Result(
        "W2",
        "W2 windowed read",
        f"One session of {size:,} items; per round and system, "
        f"{ctx.scale.w2_window_reads // rounds} newest-{NEWEST} reads and "
        f"{max(1, ctx.scale.w2_full_reads // rounds)} full reads, {rounds} round(s) in "
        "rotating order. Sync systems read from the calling thread; async ones from a task.",
    )
    directory = ctx.fresh_dir("W2")

    async def prepare(driver: Driver) -> None:
        await fill(driver, SESSION, size)
        await _reads(driver, NEWEST, 10, NEWEST)
        await _reads(driver, None, 1, size)

    drivers = await open_all(ctx, directory, result.notes, prepare)
    settle()
    # samples[(key, kind)] = one list of latencies per round
    samples: dict[tuple[str, str], list[list[float]]] = {}

    async def one(driver: Driver) -> None:
        window = await _reads(driver, NEWEST, ctx.scale.w2_window_reads // rounds, NEWEST)
        full = await _reads(driver, None, max(1, ctx.scale.w2_full_reads // rounds), size)
        samples.setdefault((driver.system.key, KINDS[0]), []).append(window)
        samples.setdefault((driver.system.key, KINDS[1]), []).append(full)

    for round_index in range(rounds):
        for system in rotate([s for s in ctx.systems if s.key in drivers], round_index):
            await attempt(ctx, f"W2 {system.label}", result.notes, one, drivers[system.key])
        ctx.log(f"  W2 round {round_index + 1}/{rounds} done")
    unsettle()
    await close_all(drivers)
    ctx.drop_dir(directory)

    labels = {s.key: s.label for s in ctx.systems}
    table = Table(f"W2 reads of a {size:,}-item session", stats_columns())
    for (key, kind), per_round in samples.items():
        table.rows.append(stats_row(labels[key], kind, summarize(sum(per_round, []))))
    result.tables.append(table)
    result.targets += read_targets("W2", samples, labels, KINDS)
    chart = bar_chart(
        charts / "w2_windowed_read.png",
        f"W2 reads of a {size:,}-item session (lower is better)",
        [(f"{kind}: ms (log)", _bars(samples, labels, kind), True) for kind in KINDS],
    )
    if chart is not None:
        result.charts.append(chart)
    return result


def _bars(
    samples: dict[tuple[str, str], list[list[float]]], labels: dict[str, str], kind: str
) -> dict[str, dict[str, float]]:
    groups: dict[str, dict[str, float]] = {}
    for (key, k), per_round in samples.items():
        if k == kind:
            stats = summarize(sum(per_round, []))
            groups[labels[key]] = {"median": stats.median, "p99": stats.p99}
    return groups


def _per_round(per_round: list[list[float]], share: float) -> list[float]:
    return [percentile(sorted(r), share) for r in per_round]


def read_targets(
    workload: str,
    samples: dict[tuple[str, str], list[list[float]]],
    labels: dict[str, str],
    kinds: tuple[str, ...],
) -> list[Target]:
    """ "No slower than the SDK" (median, p99) and "within 1.5x of raw" (median) targets.

    Ratios are ours / reference per round, so at most 1.0 means no slower.
    """
    targets: list[Target] = []

    def med(key: str, kind: str) -> float:
        return summarize(sum(samples[(key, kind)], [])).median

    for key in ("store", "memory"):
        for kind in kinds:
            ours = samples.get((key, kind))
            if ours is None:
                continue
            for ref, name, share, limit in (
                ("sdk", "SDK SQLiteSession", 0.5, 1.0),
                ("sdk", "SDK SQLiteSession", 0.99, 1.0),
                ("raw", "raw sqlite3", 0.5, 1.5),
            ):
                theirs = samples.get((ref, kind))
                if theirs is None:
                    continue
                stat = "median" if share == 0.5 else "p99"
                ratios = [
                    o / t
                    for o, t in zip(
                        _per_round(ours, share), _per_round(theirs, share), strict=False
                    )
                ]
                why = close = ""
                if key == "memory" and ("store", kind) in samples and ("raw", kind) in samples:
                    hop = med("memory", kind) - med("store", kind)
                    raw = med("raw", kind)
                    store = med("store", kind) / raw
                    why = _HOP_WHY.format(hop=hop, kind=kind, raw=raw, store=store)
                    close = _HOP_CLOSE
                elif kind == "full":
                    why = "decoding 10,000 items dominates a full read for every system"
                    close = "decode less: read a window"
                targets.append(
                    Target(
                        workload,
                        f"{kind}: {stat} <= {limit:g}x {name}",
                        labels[key],
                        ratios,
                        "<=",
                        limit,
                        why=why or "noise, or a per-call cost this workload exposes",
                        close=close or "profile this path against raw sqlite3",
                    )
                )
    return targets
