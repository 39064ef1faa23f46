"""W1 long chat: one session, N turns of (read history, add 2 items).

Measured twice for every system: as the issue words it (read the *full* history each
turn, what the Runner does with no session limit) and windowed (read the newest 50, what
the Runner does with ``SessionSettings(limit=50)``). A full read decodes every item, so
its cost grows with the conversation whatever the store; the windowed variant is what
keeps a turn's cost flat.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

from ._core import (
    Context,
    Driver,
    Result,
    Target,
    attempt,
    close_all,
    open_all,
    rotate,
    settle,
    timed,
    unsettle,
)
from ._items import turn_items
from ._report import (
    Table,
    fmt_ms,
    fmt_ratio,
    line_chart,
    rolling_median,
    stats_columns,
    stats_row,
    summarize,
)

WINDOW = 50
VARIANTS: tuple[tuple[str, int | None], ...] = (("full", None), ("window", WINDOW))
WARMUP_TURNS = 10


async def chat(driver: Driver, session_id: str, turns: int, limit: int | None) -> list[float]:
    """Run ``turns`` turns on a new session; return each turn's cost in seconds.

    Raises:
        AssertionError: a read returned the wrong number of items.
    """
    costs: list[float] = []
    for turn in range(turns):
        start = timed()
        history = await driver.get(session_id, limit)
        await driver.add(session_id, turn_items(turn))
        costs.append(timed() - start)
        expected = 2 * turn if limit is None else min(2 * turn, limit)
        assert len(history) == expected, f"turn {turn}: read {len(history)}, not {expected}"
    return costs


def run(ctx: Context, charts: Path) -> Result:
    """Run W1 and return its tables, targets and chart."""
    return asyncio.run(_run(ctx, charts))


async def _run(ctx: Context, charts: Path) -> Result:
    turns = ctx.scale.w1_turns
    seg = max(1, turns // 10)
    directory = ctx.fresh_dir("W1")
    result = Result(
        "W1",
        "W1 long chat",
        f"One session, {turns} turns of (read history, add 2 items), per system, "
        f"{ctx.scale.rounds} round(s) with the systems in rotating order. *full* reads the "
        f"whole history each turn (the issue's wording, and the Runner's default); "
        f"*window* reads the newest {WINDOW} (the Runner with "
        f"`SessionSettings(limit={WINDOW})`). Early = turns 1-{seg}, late = turns "
        f"{turns - seg + 1}-{turns}; growth = late median / early median.",
    )
    drivers = await open_all(
        ctx, directory, result.notes, lambda d: chat(d, "w1-warmup", WARMUP_TURNS, None)
    )
    settle()
    # costs[(system key, variant)] = one list of per-turn costs per round
    costs: dict[tuple[str, str], list[list[float]]] = {}

    async def one(driver: Driver, variant: str, limit: int | None, session_id: str) -> None:
        series = await chat(driver, session_id, turns, limit)
        costs.setdefault((driver.system.key, variant), []).append(series)

    for round_index in range(ctx.scale.rounds):
        for system in rotate([s for s in ctx.systems if s.key in drivers], round_index):
            for variant, limit in VARIANTS:
                label = f"W1 {system.label} {variant}"
                session_id = f"w1-{variant}-{round_index}"
                await attempt(
                    ctx, label, result.notes, one, drivers[system.key], variant, limit, session_id
                )
        ctx.log(f"  W1 round {round_index + 1}/{ctx.scale.rounds} done")
    unsettle()
    await close_all(drivers)
    ctx.drop_dir(directory)

    labels = {s.key: s.label for s in ctx.systems}
    result.tables += _tables(costs, labels, turns, seg)
    result.targets += _targets(costs, labels, seg)
    chart = _chart(costs, labels, charts / "w1_long_chat.png")
    if chart is not None:
        result.charts.append(chart)
    return result


def _late(series: list[float], seg: int) -> float:
    return sum(series[-seg:])


def _growth(series: list[float], seg: int) -> float:
    return statistics.median(series[-seg:]) / statistics.median(series[:seg])


def _tables(
    costs: dict[tuple[str, str], list[list[float]]], labels: dict[str, str], turns: int, seg: int
) -> list[Table]:
    per_turn = Table(f"W1 per-turn cost (all rounds pooled), {seg} turns a row", stats_columns())
    summary = Table(
        "W1 throughput and growth (median over rounds [range])",
        ["system", "variant", "turns/s all", "turns/s early", "turns/s late", "growth late/early"],
    )
    for (key, variant), rounds in costs.items():
        early = [c for series in rounds for c in series[:seg]]
        late = [c for series in rounds for c in series[-seg:]]
        per_turn.rows.append(stats_row(labels[key], f"{variant}: turns 1-{seg}", summarize(early)))
        per_turn.rows.append(
            stats_row(labels[key], f"{variant}: turns {turns - seg + 1}-{turns}", summarize(late))
        )
        summary.rows.append(
            [
                labels[key],
                variant,
                fmt_ms(statistics.median(len(s) / sum(s) for s in rounds)),
                fmt_ms(statistics.median(seg / sum(s[:seg]) for s in rounds)),
                fmt_ms(statistics.median(seg / _late(s, seg) for s in rounds)),
                fmt_ratio([_growth(s, seg) for s in rounds]),
            ]
        )
    return [summary, per_turn]


def _targets(
    costs: dict[tuple[str, str], list[list[float]]], labels: dict[str, str], seg: int
) -> list[Target]:
    targets: list[Target] = []
    sdk_full = costs.get(("sdk", "full"))
    sdk_window = costs.get(("sdk", "window"))

    def ms(key: str, variant: str, late: bool) -> float | None:
        rounds = costs.get((key, variant))
        if rounds is None:
            return None
        part = [c for s in rounds for c in (s[-seg:] if late else s[:seg])]
        return statistics.median(part) * 1000

    def figures(variant: str, late: bool, keys: tuple[str, ...]) -> str:
        shown = [(k, ms(k, variant, late)) for k in dict.fromkeys(keys)]
        return ", ".join(f"{labels[k]} {v:.2f} ms" for k, v in shown if v is not None)

    reads = {
        "full": "a full read fetches and decodes only the rows added since the previous "
        "one (the history cache), but still builds every item of the history anew, so its "
        "cost grows with the history",
        "window": f"a windowed read is one query through the (session, seq) index for the "
        f"newest {WINDOW} rows and {WINDOW} JSON decodes",
    }
    add = (
        "the add is one group-commit transaction (an UPSERT ... RETURNING of the session "
        "row, one INSERT of the 2 messages)"
    )
    profile = {
        "full": "a late turn is mostly building the history's objects (see W2, full): "
        "only reading less (a window) keeps a turn's cost flat",
        "window": "profile a late turn against raw sqlite3's: the windowed query, the "
        "decoding and the add",
    }
    for key in ("memory", "store"):
        for variant, sdk in (("full", sdk_full), ("window", sdk_window)):
            ours = costs.get((key, variant))
            if ours is None:
                continue
            if sdk is not None:
                ratios = [_late(s, seg) / _late(o, seg) for s, o in zip(sdk, ours, strict=False)]
                targets.append(
                    Target(
                        "W1",
                        f"{variant}: late-turn throughput, ours / SDK SQLiteSession ({variant}) "
                        ">= 3",
                        labels[key],
                        ratios,
                        ">=",
                        3.0,
                        why=(
                            f"late-turn median ({variant}, rounds pooled): "
                            f"{figures(variant, True, (key, 'sdk', 'raw'))}; "
                            f"{reads[variant]}; {add}"
                        ),
                        close=(variant == "window" and _above_raw(costs, seg)) or profile[variant],
                    )
                )
            early, late = ms(key, variant, False), ms(key, variant, True)
            targets.append(
                Target(
                    "W1",
                    f"{variant}: late-turn cost <= 1.5x early-turn cost",
                    labels[key],
                    [_growth(s, seg) for s in ours],
                    "<=",
                    1.5,
                    why=(
                        f"turn median {early:.2f} ms early and {late:.2f} ms late (rounds "
                        f"pooled); {reads[variant]}"
                    ),
                    close=(
                        "read a window: with a session limit the cost stays flat "
                        "(the *window* rows); a full read can only grow"
                        if variant == "full"
                        else "profile an early and a late windowed read: the query plan and "
                        "the rows it visits"
                    ),
                )
            )
    # What a user switching from the SDK's default (full reads) to a windowed Runner gets.
    for key in ("memory", "store"):
        ours = costs.get((key, "window"))
        if ours is not None and sdk_full is not None:
            targets.append(
                Target(
                    "W1",
                    "late-turn throughput, ours (window) / SDK SQLiteSession (full) >= 3",
                    labels[key],
                    [_late(s, seg) / _late(o, seg) for s, o in zip(sdk_full, ours, strict=False)],
                    ">=",
                    3.0,
                    why=(
                        f"late-turn median: {labels[key]} (window) {ms(key, 'window', True):.2f}"
                        f" ms, SDK SQLiteSession (full) {ms('sdk', 'full', True):.2f} ms; "
                        f"{reads['window']}, while the SDK's full read grows with the history"
                    ),
                    close="more turns per session (the gap grows with the history the SDK "
                    "reads in full)",
                )
            )
    return targets


def _chart(
    costs: dict[tuple[str, str], list[list[float]]], labels: dict[str, str], path: Path
) -> Path | None:
    panels = []
    for variant, title in (("full", "full history read"), ("window", f"newest {WINDOW}")):
        lines = {}
        for (key, var), rounds in costs.items():
            if var != variant:
                continue
            per_turn = [
                statistics.median(r[i] for r in rounds) * 1000 for i in range(len(rounds[0]))
            ]
            lines[labels[key]] = (list(range(1, len(per_turn) + 1)), rolling_median(per_turn))
        panels.append(("turn", f"per-turn cost, ms ({title}; log)", lines, True))
    return line_chart(path, "W1 long chat: cost of each turn (rolling median)", panels)


def _above_raw(costs: dict[tuple[str, str], list[list[float]]], seg: int) -> str:
    """What to say when 3x the SDK's windowed late-turn throughput is more than raw
    sqlite3 makes doing the same turns (the limit for a windowed read and an add); ''."""
    sdk, raw = costs.get(("sdk", "window")), costs.get(("raw", "window"))
    if sdk is None or raw is None:
        return ""
    ratios = [_late(s, seg) / _late(r, seg) for s, r in zip(sdk, raw, strict=False)]
    best = statistics.median(ratios)
    if best >= 3:
        return ""
    return (
        f"raw sqlite3 doing the same windowed turns (the same query, decode and add) makes "
        f"{best:.2f}x the SDK's late-turn throughput, less than 3x: no store can reach the "
        "target on this machine"
    )
