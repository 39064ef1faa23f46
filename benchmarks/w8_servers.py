"""W8 servers: agentsession on PostgreSQL and on Redis, against the SDK's session on the
same server and the raw driver doing the same work (the limit).

For each server (PostgreSQL, then Redis) its four systems run, in rotating order each
round, the operations of W1-W3:

- *chat*: one session, N turns of (read history, add 2 items), with the full history and
  with the newest 50 (W1);
- *reads*: newest-20 and full reads of one long session (W2);
- *8 workers*: 8 workers (threads for a sync system, tasks on one loop for an async
  one), each on its own session, then all 8 on one shared session, turns of (newest 50,
  add 2): every turn's cost and the throughput (W3). The shared session is read back to
  check that no add was lost, reordered or split.

Every system keeps its data in a namespace of its own (a PostgreSQL schema, a Redis key
prefix) named after the run; all of them are removed at the end.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import w1_chat, w3_server
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
from ._items import tagged_turn, turn_items
from ._report import (
    Stats,
    Table,
    bar_chart,
    fmt_ms,
    percentile,
    stats_columns,
    stats_row,
    summarize,
)
from ._systems import System
from ._systems_servers import (
    DEFAULT_POSTGRES,
    DEFAULT_REDIS,
    reachable,
    redact,
    server_facts,
    sweep,
)

ENGINES = {"postgres": ("PostgreSQL", "--pg"), "redis": ("Redis", "--redis")}
DEFAULTS = {"postgres": DEFAULT_POSTGRES, "redis": DEFAULT_REDIS}
WORKERS = w3_server.WORKERS
WINDOW = 50
NEWEST = 20
LONG = "w8-long"
CHAT = (("full", None), ("newest 50", WINDOW))
READS = ("newest 20", "full")
MODES = ("own sessions", "one shared session")
WARMUP_TURNS = 10
_TAG = re.compile(r"^\[(\d+):(\d+)\] ")

Samples = dict[tuple[str, str], list[list[float]]]


def run(ctx: Context, charts: Path) -> Result:
    """Run W8 on every server that answers and return its tables, targets and charts."""
    return asyncio.run(_run(ctx, charts))


async def _run(ctx: Context, charts: Path) -> Result:
    scale = ctx.scale
    base = f"agentsession_bench_{uuid.uuid4().hex[:10]}"
    result = Result(
        "W8",
        "W8 servers (PostgreSQL and Redis)",
        f"Per server, its systems in rotating order, {scale.rounds} round(s): *chat* is "
        f"one session, {scale.w8_turns} turns of (read history, add 2 items), reading the "
        f"full history and the newest {WINDOW}; *reads* are "
        f"{scale.w8_reads // scale.rounds} newest-{NEWEST} and "
        f"{max(1, scale.w8_full_reads // scale.rounds)} full reads a round of a "
        f"{scale.w8_items:,}-item session; *{WORKERS} workers* run {scale.w8_worker_turns} "
        f"turns each of (newest {WINDOW}, add 2), each on its own session, then all on one "
        "shared session (read back afterwards: lost, reordered or split adds are counted). "
        "Sync systems are driven from the calling thread (chat, reads) or one thread per "
        "worker; async ones from tasks on one event loop. Each system has its own "
        f"PostgreSQL schema or Redis key prefix (`{base}_*`), removed at the end.",
    )
    ctx.log(f"  W8 namespace: {base}")
    facts: list[str] = []
    try:
        for engine, (name, flag) in ENGINES.items():
            systems = [s for s in ctx.systems if s.engine == engine]
            if not systems:
                continue
            url = ctx.servers.get(engine, DEFAULTS[engine])
            reason = reachable(engine, url)
            if reason is not None:
                message = f"skipping the {name} systems: {reason} (give another with {flag})"
                warnings.warn(message, stacklevel=1)
                result.notes.append(message)
                continue
            facts.append(f"{server_facts(engine, url)} at {redact(url)}")
            await _engine(ctx, charts, result, engine, url, base, systems)
    finally:
        engines = {s.engine for s in ctx.systems if s.engine in ENGINES}
        servers = {e: ctx.servers.get(e, DEFAULTS[e]) for e in engines}
        engines = {e for e in engines if reachable(e, servers[e]) is None}
        try:
            for line in sweep(servers, base, engines):
                ctx.log(f"  W8 removed {line}")
        except Exception as exc:  # noqa: BLE001 - reported: the names to remove by hand
            message = f"W8 could not remove what starts with {base}: {type(exc).__name__}: {exc}"
            ctx.log("  ! " + message)
            result.notes.append(message)
    if facts:
        result.summary += " Servers: " + "; ".join(facts) + "."
    return result


async def _engine(
    ctx: Context,
    charts: Path,
    result: Result,
    engine: str,
    url: str,
    base: str,
    systems: list[System],
) -> None:
    scale = ctx.scale
    name = ENGINES[engine][0]

    def opener(system: System) -> Driver:
        assert system.connect is not None
        return Driver(system, system.connect(url, f"{base}_{system.key.replace('-', '_')}"))

    async def prepare(driver: Driver) -> None:
        await w1_chat.chat(driver, "w8-warmup", WARMUP_TURNS, None)
        await fill(driver, LONG, scale.w8_items)
        await _reads(driver, NEWEST, 10, NEWEST)
        await _reads(driver, None, 1, scale.w8_items)

    drivers = await open_all(ctx, ctx.root, result.notes, prepare, systems=systems, opener=opener)
    settle()
    chat: Samples = {}
    reads: Samples = {}
    turns: Samples = {}
    rates: dict[tuple[str, str], list[float]] = {}
    problems: dict[str, list[float]] = {}

    async def one(driver: Driver, round_index: int) -> None:
        key = driver.system.key
        for variant, limit in CHAT:
            session_id = f"w8-chat-{variant.replace(' ', '')}-{round_index}"
            costs = await w1_chat.chat(driver, session_id, scale.w8_turns, limit)
            chat.setdefault((key, variant), []).append(costs)
        count = scale.w8_reads // scale.rounds
        reads.setdefault((key, READS[0]), []).append(await _reads(driver, NEWEST, count, NEWEST))
        count = max(1, scale.w8_full_reads // scale.rounds)
        reads.setdefault((key, READS[1]), []).append(
            await _reads(driver, None, count, scale.w8_items)
        )
        tag = f"w8r{round_index}"
        rate, costs = await w3_server.server_round(driver, scale.w8_worker_turns, tag)
        rates.setdefault((key, MODES[0]), []).append(rate)
        turns.setdefault((key, MODES[0]), []).append(costs)
        rate, costs, bad = await _shared_round(driver, scale.w8_worker_turns, tag)
        rates.setdefault((key, MODES[1]), []).append(rate)
        turns.setdefault((key, MODES[1]), []).append(costs)
        problems.setdefault(key, []).append(bad)

    try:
        for round_index in range(scale.rounds):
            for system in rotate([s for s in systems if s.key in drivers], round_index):
                label = f"W8 {system.label}"
                await attempt(ctx, label, result.notes, one, drivers[system.key], round_index)
            ctx.log(f"  W8 {name} round {round_index + 1}/{scale.rounds} done")
    finally:
        unsettle()
        await close_all(drivers)

    labels = {s.key: s.label for s in systems}
    _tables(result, name, labels, chat, reads, turns, rates, problems, scale.w8_items)
    result.targets += _targets(engine, name, labels, chat, reads, turns, rates, problems)
    chart = _chart(charts / f"w8_{engine}.png", name, labels, chat, reads, rates)
    if chart is not None:
        result.charts.append(chart)


async def _reads(driver: Driver, limit: int | None, count: int, expect: int) -> list[float]:
    samples: list[float] = []
    for _ in range(count):
        start = timed()
        items = await driver.get(LONG, limit)
        samples.append(timed() - start)
        assert len(items) == expect, f"read {len(items)} items, not {expect}"
    return samples


async def _shared_round(driver: Driver, turns: int, tag: str) -> tuple[float, list[float], int]:
    """8 workers on one session: (turns per second, every turn's cost, problems found
    reading the session back: items lost, and adds reordered or split)."""
    session_id = f"w8-shared-{tag}"
    await driver.add(session_id, turn_items(0))  # the session exists before the start

    async def worker(index: int, gate: Gate) -> tuple[float, float, list[float]]:
        await w3_server._turns(driver, f"w8-shared-{tag}-{index}-warmup", 3)
        await gate.wait()
        start = timed()
        costs: list[float] = []
        for turn in range(turns):
            begun = timed()
            history = await driver.get(session_id, WINDOW)
            await driver.add(session_id, tagged_turn(index, turn))
            costs.append(timed() - begun)
            assert 0 < len(history) <= WINDOW, f"read {len(history)} items"
        return start, timed(), costs

    results = await run_workers(driver, WORKERS, worker)
    wall = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    stored = await driver.get(session_id, None)
    return (
        WORKERS * turns / wall,
        [c for *_, costs in results for c in costs],
        _check(stored, turns),
    )


def _check(stored: list[Any], turns: int) -> int:
    """Count what is wrong in a shared session read back: missing or extra items, turns
    out of order for their writer, and adds whose two items are not adjacent."""
    bad = abs(len(stored) - (2 + 2 * WORKERS * turns))
    last = dict.fromkeys(range(WORKERS), -1)
    for index, item in enumerate(stored):
        content = item.get("content") if item.get("role") == "user" else None
        match = _TAG.match(content) if isinstance(content, str) else None
        if match is None:
            continue
        writer, turn = int(match[1]), int(match[2])
        if writer not in last or turn != last[writer] + 1:
            bad += 1
        last[writer] = turn
        following = stored[index + 1] if index + 1 < len(stored) else None
        if following != tagged_turn(writer, turn)[1]:
            bad += 1
    return bad + sum(turn != turns - 1 for turn in last.values())


# -- report ----------------------------------------------------------------------------


def _pooled(samples: Samples, key: str, kind: str) -> Stats:
    return summarize(sum(samples.get((key, kind), []), []))


def _tables(
    result: Result,
    name: str,
    labels: dict[str, str],
    chat: Samples,
    reads: Samples,
    turns: Samples,
    rates: dict[tuple[str, str], list[float]],
    problems: dict[str, list[float]],
    items: int,
) -> None:
    cost = Table(f"W8 {name}: turn cost (rounds pooled)", stats_columns())
    for key in labels:
        for variant, _ in CHAT:
            if (key, variant) in chat:
                cost.rows.append(
                    stats_row(labels[key], f"chat, {variant}", _pooled(chat, key, variant))
                )
        for mode in MODES:
            if (key, mode) in turns:
                what = f"{WORKERS} workers on {mode}"
                cost.rows.append(stats_row(labels[key], what, _pooled(turns, key, mode)))
    read = Table(f"W8 {name}: reads of a {items:,}-item session", stats_columns())
    for key in labels:
        for kind in READS:
            if (key, kind) in reads:
                read.rows.append(stats_row(labels[key], kind, _pooled(reads, key, kind)))
    workers = Table(
        f"W8 {name}: {WORKERS} concurrent workers (turns/s: median over rounds [range])",
        ["system", "sessions", "turns/s", "turn median ms", "turn p99 ms", "read-back"],
    )
    for key in labels:
        for mode in MODES:
            if (key, mode) not in rates:
                continue
            stats = _pooled(turns, key, mode)
            check = "-"
            if mode == MODES[1]:
                found = sum(problems.get(key, []))
                check = "ok" if found == 0 else f"{found:g} problems"
            median, low, high = _range(rates[(key, mode)])
            spread = "" if low == high else f" [{fmt_ms(low)}-{fmt_ms(high)}]"
            workers.rows.append(
                [labels[key], mode, fmt_ms(median) + spread, fmt_ms(stats.median),
                 fmt_ms(stats.p99), check]
            )  # fmt: skip
    result.tables += [cost, read, workers]


def _range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _targets(
    engine: str,
    name: str,
    labels: dict[str, str],
    chat: Samples,
    reads: Samples,
    turns: Samples,
    rates: dict[tuple[str, str], list[float]],
    problems: dict[str, list[float]],
) -> list[Target]:
    """The targets, per agentsession system on this server:

    - chat turn median (full and newest 50) <= 1x the SDK's session; newest 50 <= 2x raw;
    - newest-20 read median <= 1x the SDK's session and <= 1.5x raw;
    - with 8 workers (own sessions, one shared session): turn p99 <= 1x the SDK's, the
      SDK's throughput / ours <= 1 and raw's / ours <= 2;
    - the shared session read back: lost + reordered + split adds = 0.
    """
    prefix = "pg" if engine == "postgres" else "redis"
    sdk, raw = f"{prefix}-sdk", f"{prefix}-raw"
    targets: list[Target] = []

    def latency(
        samples: Samples, key: str, ref: str, kind: str, share: float, limit: float, what: str
    ) -> None:
        ours, theirs = samples.get((key, kind)), samples.get((ref, kind))
        if ours is None or theirs is None:
            return
        ratios = [
            percentile(sorted(o), share) / percentile(sorted(t), share)
            for o, t in zip(ours, theirs, strict=False)
        ]
        stat = "median" if share == 0.5 else "p99"
        pooled = {k: percentile(sorted(sum(samples.get((k, kind), []), [])), share) * 1000
                  for k in (key, sdk, raw) if (k, kind) in samples}  # fmt: skip
        figures = ", ".join(f"{labels[k]} {v:.2f} ms" for k, v in pooled.items())
        targets.append(
            Target(
                "W8",
                f"{name} {what}: {stat} <= {limit:g}x {labels[ref]}",
                labels[key],
                ratios,
                "<=",
                limit,
                why=f"not profiled yet; {stat} {what}, rounds pooled: {figures}",
                close=_close(key, labels, raw),
            )
        )

    def throughput(key: str, ref: str, mode: str, limit: float) -> None:
        ours, theirs = rates.get((key, mode)), rates.get((ref, mode))
        if ours is None or theirs is None:
            return
        figures = ", ".join(
            f"{labels[k]} {statistics.median(rates[(k, mode)]):.0f}"
            for k in (key, sdk, raw)
            if (k, mode) in rates
        )
        targets.append(
            Target(
                "W8",
                f"{name} {WORKERS} workers on {mode}: {labels[ref]} turns/s / ours <= {limit:g}",
                labels[key],
                [t / o for t, o in zip(theirs, ours, strict=False)],
                "<=",
                limit,
                why=f"not profiled yet; turns/s with {WORKERS} workers on {mode} (median over "
                f"rounds): {figures}",
                close=_close(key, labels, raw),
            )
        )

    for key in (f"{prefix}-store", f"{prefix}-memory"):
        if key not in labels:
            continue
        for variant, _ in CHAT:
            latency(chat, key, sdk, variant, 0.5, 1.0, f"chat turn ({variant})")
        latency(chat, key, raw, CHAT[1][0], 0.5, 2.0, f"chat turn ({CHAT[1][0]})")
        latency(reads, key, sdk, READS[0], 0.5, 1.0, f"newest-{NEWEST} read")
        latency(reads, key, raw, READS[0], 0.5, 1.5, f"newest-{NEWEST} read")
        for mode in MODES:
            latency(turns, key, sdk, mode, 0.99, 1.0, f"turn, {WORKERS} workers on {mode}")
            throughput(key, sdk, mode, 1.0)
            throughput(key, raw, mode, 2.0)
        if key in problems:
            targets.append(
                Target(
                    "W8",
                    f"{name} shared session: lost + reordered + split adds = 0",
                    labels[key],
                    problems[key],
                    "<=",
                    0,
                    why="the shared session read back after the workers did not hold every "
                    "add once, in each writer's order, with its two items together",
                    close="a test that reproduces it with concurrent writers on one session",
                    unit="",
                )
            )
    return targets


def _close(key: str, labels: dict[str, str], raw: str) -> str:
    hop = (
        "; for the memory, also its worker-thread hop (compare the store row)"
        if key.endswith("-memory")
        else ""
    )
    return (
        f"profile {labels[key]}'s calls against the {labels[raw]} row: round trips per "
        f"call, pool checkout, validation and encoding{hop}"
    )


def _chart(
    path: Path,
    name: str,
    labels: dict[str, str],
    chat: Samples,
    reads: Samples,
    rates: dict[tuple[str, str], list[float]],
) -> Path | None:
    def panel(samples: Samples, kinds: tuple[str, ...], pick: Callable[[Stats], float]) -> Any:
        return {
            labels[key]: {kind: pick(_pooled(samples, key, kind)) for kind in kinds}
            for key in labels
            if any((key, kind) in samples for kind in kinds)
        }

    return bar_chart(
        path,
        f"W8 {name}: agentsession, the SDK's session and the raw driver",
        [
            (
                "chat turn median, ms (log)",
                panel(chat, tuple(v for v, _ in CHAT), lambda s: s.median),
                True,
            ),
            (
                f"newest-{NEWEST} read, ms (log)",
                {
                    labels[k]: {
                        "median": _pooled(reads, k, READS[0]).median,
                        "p99": _pooled(reads, k, READS[0]).p99,
                    }
                    for k in labels
                    if (k, READS[0]) in reads
                },
                True,
            ),
            (
                f"turns/s, {WORKERS} workers (higher is better)",
                {
                    labels[k]: {
                        mode: statistics.median(rates[(k, mode)])
                        for mode in MODES
                        if (k, mode) in rates
                    }
                    for k in labels
                    if any((k, mode) in rates for mode in MODES)
                },
                False,
            ),
        ],
    )
