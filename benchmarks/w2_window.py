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

_WHAT = {
    "newest 20": "one query through the (session, seq) index for the newest 20 rows, "
    "then 20 JSON decodes",
    "full": "one query for the session's generation and the rows after those its history "
    "cache keeps (none after the first read; see agentsession.stores.history_cache), then the "
    "kept history unmarshalled into new objects",
}
_HOP = (
    "; the memory runs each read in a thread of its own pool (one hop per call), the store "
    "on the calling thread: memory minus store is {hop:.3f} ms"
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

    def pooled(key: str, kind: str, share: float) -> float:
        # milliseconds
        return percentile(sorted(sum(samples[(key, kind)], [])), share) * 1000

    def figures(key: str, kind: str, share: float) -> str:
        shown = [k for k in (key, "store", "sdk", "raw") if (k, kind) in samples]
        listed = ", ".join(
            f"{labels[k]} {pooled(k, kind, share):.3f} ms" for k in dict.fromkeys(shown)
        )
        hop = ""
        if key == "memory" and ("store", kind) in samples:
            hop = _HOP.format(hop=pooled("memory", kind, 0.5) - pooled("store", kind, 0.5))
        stat = "median" if share == 0.5 else "p99"
        return (
            f"{kind} read {stat} (rounds pooled): {listed}; agentsession's read is "
            f"{_WHAT.get(kind, 'one query')}{hop}"
        )

    close = {
        "newest 20": "profile the windowed read against raw sqlite3's: the query, the "
        "decoding, and for the memory the hop into its thread pool",
        "full": "what is left is making the objects: a read that returns new objects "
        "builds every dict, list and string of the history anew, from marshal bytes here "
        "and from JSON in the SDK, so only a faster way to build them, or sharing objects "
        "(unsafe: a caller may change what it got), could go further",
    }

    for key in ("store", "memory"):
        for kind in kinds:
            ours = samples.get((key, kind))
            if ours is None:
                continue
            checks = [
                ("sdk", "SDK SQLiteSession", 0.5, 1.0),
                ("sdk", "SDK SQLiteSession", 0.99, 1.0),
                ("raw", "raw sqlite3", 0.5, 1.5),
            ]
            if kind == "full":  # the issue: a full read of a long session 3x the SDK's
                checks.append(("sdk", "SDK SQLiteSession", 0.5, 1 / 3))
            for ref, name, share, limit in checks:
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
                goal = (
                    f"{kind}: {stat}, ours / {name} <= 1/3 (3x faster)"
                    if limit < 1
                    else f"{kind}: {stat} <= {limit:g}x {name}"
                )
                targets.append(
                    Target(
                        workload,
                        goal,
                        labels[key],
                        ratios,
                        "<=",
                        limit,
                        why=figures(key, kind, share),
                        close=close.get(kind, "profile this read against raw sqlite3's"),
                    )
                )
    return targets
