"""The usage ledger's values, engine-neutral: checking, storing and summing ``RunRecord``s.

SQL engines store a record as one row of ``COLUMNS`` (times as Unix seconds); Redis and
the JSON Lines export store it as one JSON object with the same keys (``to_json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

from ..protocol import RunRecord, SessionUsage
from .values import check_text

__all__ = (
    "COLUMNS",
    "COUNTS",
    "OUTCOMES",
    "check_run",
    "from_json",
    "from_row",
    "sum_runs",
    "to_json",
    "to_row",
    "usage_from_sums",
)

#: Every field of ``RunRecord``, in order: the columns of a ledger row.
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
#: The fields ``SessionUsage`` sums.
COUNTS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
)
OUTCOMES = ("completed", "failed", "cancelled")
_INTS = (*COUNTS, "items_added")
_TIMES = ("started_at", "ended_at")


def check_run(run: Any, session_id: str) -> RunRecord:
    """Return ``run`` if it is a valid ``RunRecord`` of ``session_id``.

    Raises:
        TypeError: not a ``RunRecord``, or a field of the wrong type (named).
        ValueError: it belongs to another session, a negative count, a naive time, an
            unknown outcome, or a text holding a lone surrogate.
    """
    if not isinstance(run, RunRecord):
        raise TypeError(f"run must be a RunRecord, got {run!r:.80}")
    if run.session_id != session_id:
        raise ValueError(
            f"run {run.run_id!r} belongs to session {run.session_id!r}, not {session_id!r}"
        )
    for name in ("run_id", "agent", "model"):
        check_text(getattr(run, name), f"run.{name}")
    if not run.run_id:
        raise ValueError("run.run_id must not be empty")
    for name in _INTS:
        value = getattr(run, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"run.{name} must be an int, got {value!r:.80}")
        if value < 0:
            raise ValueError(f"run.{name} must be 0 or more, got {value}")
    for name in _TIMES:
        value = getattr(run, name)
        if not isinstance(value, datetime):
            raise TypeError(f"run.{name} must be a datetime, got {value!r:.80}")
        if value.tzinfo is None:
            raise ValueError(f"run.{name} must be timezone-aware, got {value!r}")
    if run.outcome not in OUTCOMES:
        raise ValueError(f"run.outcome must be one of {OUTCOMES}, got {run.outcome!r:.80}")
    return run


def to_row(run: RunRecord) -> tuple[Any, ...]:
    """The record as column values, in ``COLUMNS`` order (times as Unix seconds)."""
    return tuple(
        getattr(run, name).timestamp() if name in _TIMES else getattr(run, name) for name in COLUMNS
    )


def from_row(row: Iterable[Any]) -> RunRecord:
    """The record of a row of ``COLUMNS`` values."""
    values = dict(zip(COLUMNS, row, strict=True))
    for name in _TIMES:
        values[name] = datetime.fromtimestamp(float(values[name]), timezone.utc)
    for name in _INTS:
        values[name] = int(values[name])
    return RunRecord(**values)


def to_json(run: RunRecord) -> str:
    """The record as one JSON object text with the ``COLUMNS`` keys."""
    return json.dumps(dict(zip(COLUMNS, to_row(run), strict=True)), separators=(",", ":"))


def from_json(record: Any, session_id: str) -> RunRecord:
    """The record of a JSON object (a ``to_json`` text or its parsed dict), checked.

    Raises:
        ValueError: not a run record of ``session_id`` (the message says what is wrong).
    """
    try:
        values = json.loads(record) if isinstance(record, (str, bytes)) else record
        if not isinstance(values, dict):
            raise TypeError("not a JSON object")
        row = [values[name] for name in COLUMNS]
        for name in _TIMES:
            stamp = values[name]
            if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
                raise TypeError(f"{name} is not a number")
            if not math.isfinite(stamp):
                raise ValueError(f"{name} is not finite")
        return check_run(from_row(row), session_id)
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"bad run record for session {session_id!r}: {exc}") from None


def usage_from_sums(
    runs: int, sums: Iterable[Any], first: float | None, last: float | None
) -> SessionUsage:
    """A ``SessionUsage`` from a count, the ``COUNTS`` sums and the first/last times."""
    if not runs:
        return SessionUsage()
    totals = {name: int(value or 0) for name, value in zip(COUNTS, sums, strict=True)}
    return SessionUsage(
        runs=int(runs),
        first_run_at=None if first is None else datetime.fromtimestamp(first, timezone.utc),
        last_run_at=None if last is None else datetime.fromtimestamp(last, timezone.utc),
        **totals,
    )


def sum_runs(records: Iterable[RunRecord]) -> SessionUsage:
    """The ``SessionUsage`` of ``records`` (an engine that cannot sum them itself)."""
    count = 0
    sums = [0] * len(COUNTS)
    first: float | None = None
    last: float | None = None
    for run in records:
        count += 1
        for i, name in enumerate(COUNTS):
            sums[i] += getattr(run, name)
        started, ended = run.started_at.timestamp(), run.ended_at.timestamp()
        first = started if first is None else min(first, started)
        last = ended if last is None else max(last, ended)
    return usage_from_sums(count, sums, first, last)
