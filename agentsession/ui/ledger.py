"""Token figures for the pages, where the store keeps a usage ledger.

The one seam between the inspector and the usage ledger: a store that has
``usage(session_id)`` (an object with ``total_tokens``) and ``runs(session_id, limit=...)``
(records with ``total_tokens``, ``input_tokens``, ``output_tokens`` and ``started_at``,
newest first) gets a tokens column and a chart of tokens per run; any other store gets
neither, and the pages say nothing about tokens. Detected once per store, by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ("Bar", "UsageLedger", "chart", "has_ledger", "total_tokens")


class _Usage(Protocol):
    total_tokens: int


class _Run(Protocol):
    started_at: datetime
    input_tokens: int
    output_tokens: int
    total_tokens: int


@runtime_checkable
class UsageLedger(Protocol):
    """What the pages read of a store's usage ledger (blocking, thread-safe)."""

    def usage(self, session_id: str) -> _Usage: ...

    def runs(self, session_id: str, limit: int = 20) -> list[Any]: ...


def has_ledger(store: object) -> bool:
    """Whether ``store`` keeps a usage ledger the pages can show."""
    return isinstance(store, UsageLedger)


def total_tokens(store: object, session_id: str) -> int | None:
    """The session's recorded tokens, or ``None`` when the store keeps no ledger."""
    if not isinstance(store, UsageLedger):
        return None
    return int(store.usage(session_id).total_tokens)


@dataclass(frozen=True)
class Bar:
    """One run in the tokens chart: its place and height in the SVG, and its figures."""

    x: int
    y: int
    width: int
    height: int
    label: str


#: The chart's drawing area, in SVG units.
CHART_WIDTH = 600
CHART_HEIGHT = 120


def chart(store: object, session_id: str, limit: int = 50) -> list[Bar] | None:
    """Bars for the session's last ``limit`` runs, oldest first; ``None`` without a ledger."""
    if not isinstance(store, UsageLedger):
        return None
    runs: list[_Run] = list(reversed(store.runs(session_id, limit=limit)))
    if not runs:
        return []
    top = max(max(int(run.total_tokens) for run in runs), 1)
    slot = CHART_WIDTH // max(len(runs), 1)
    bars = []
    for index, run in enumerate(runs):
        height = max(1, round(int(run.total_tokens) * CHART_HEIGHT / top))
        bars.append(
            Bar(
                x=index * slot + 1,
                y=CHART_HEIGHT - height,
                width=max(slot - 2, 1),
                height=height,
                label=(
                    f"{run.started_at:%Y-%m-%d %H:%M}: {run.total_tokens} tokens "
                    f"({run.input_tokens} in, {run.output_tokens} out)"
                ),
            )
        )
    return bars
