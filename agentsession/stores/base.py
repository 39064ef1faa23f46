"""What every store's history management shares: argument checks, metadata, cursors.

Engine-neutral: the SQLite, PostgreSQL and Redis stores all check their arguments here,
so a caller mistake raises the same ``TypeError`` / ``ValueError`` whatever the engine.
``StoreCore`` declares the hooks the SQLite mixins (``stores.sqlite.history``,
``stores.sqlite.retention``) reach the database through, so they follow ``SQLiteStore``'s
connection, locking and error-mapping rules.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._serialize import _encoder, _find_bad_value
from ..exceptions import StoreError
from ..protocol import SessionInfo
from .sqlite.schema import LOCKS

__all__ = (
    "NOT_LEASED",
    "Progress",
    "StoreCore",
    "check_count",
    "check_fork",
    "check_metadata_filter",
    "check_search",
    "check_timestamp",
    "check_ttl",
    "decode_cursor",
    "dump_metadata",
    "encode_cursor",
    "info_from_row",
    "is_user_message",
    "load_metadata",
    "metadata_matches",
    "newest_window",
    "prune_cutoff",
)

T = TypeVar("T")

#: Called with how many items (messages, sessions) were just done; for progress bars.
Progress = Callable[[int], None]

logger = logging.getLogger("agentsession")

#: SQL condition on a sessions row ``s``: no run holds the session's lease right now
#: (bind the current time). History management leaves running sessions alone.
NOT_LEASED = (
    f"NOT EXISTS (SELECT 1 FROM {LOCKS} l WHERE l.session_id = s.session_id AND l.expires_at > ?)"
)


class StoreCore:
    """The parts of ``SQLiteStore`` the history mixins call (declared for type checkers)."""

    if TYPE_CHECKING:
        path: Path | None

        def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
            raise NotImplementedError

        def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
            raise NotImplementedError

        def _translate(self, exc: sqlite3.Error) -> StoreError:
            raise NotImplementedError


def check_count(value: Any, name: str, *, minimum: int) -> int:
    """Return ``value`` if it is an int of at least ``minimum`` (``bool`` refused).

    Raises:
        TypeError: not an int.
        ValueError: below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_timestamp(value: Any) -> bool:
    """Whether ``value`` is a finite number of seconds (``bool`` is not)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def dump_metadata(metadata: Any, name: str = "metadata") -> str:
    """Encode a metadata object to JSON text, or raise naming the bad value.

    Raises:
        TypeError: not a dict with string keys, or a value JSON cannot represent.
    """
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"{name} must be a dict (a JSON object), not {type(metadata).__name__}: "
            f"{metadata!r:.80}"
        )
    value = dict(metadata)
    try:
        bad = _find_bad_value(value)
        if bad is None:
            return _encoder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"{name} is not JSON-serializable ({exc}): {value!r:.80}") from exc
    raise TypeError(
        f"{name} is not JSON-serializable: {bad!r:.80} ({type(bad).__name__}) in {value!r:.80}"
    )


def load_metadata(text: str, session_id: str) -> dict[str, Any]:
    """Decode stored metadata; ``{}`` (with a warning) if it is not a JSON object."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        value = None
    if isinstance(value, dict):
        return value
    logger.warning("ignoring corrupt metadata of session %r", session_id)
    return {}


def info_from_row(row: tuple[str, int, float, float, str]) -> SessionInfo:
    """A ``SessionInfo`` from ``(session_id, message_count, created_at, updated_at, metadata)``."""
    session_id, count, created, updated, metadata = row
    return SessionInfo(
        session_id=session_id,
        message_count=count,
        created_at=datetime.fromtimestamp(created, timezone.utc),
        updated_at=datetime.fromtimestamp(updated, timezone.utc),
        metadata=load_metadata(metadata, session_id),
    )


def check_ttl(ttl: Any, name: str = "ttl") -> timedelta:
    """Return ``ttl`` if it is a positive ``timedelta``.

    Raises:
        TypeError: not a ``timedelta``.
        ValueError: zero or negative.
    """
    if not isinstance(ttl, timedelta):
        raise TypeError(f"{name} must be a timedelta, got {ttl!r:.80}")
    if ttl <= timedelta(0):
        raise ValueError(f"{name} must be positive, got {ttl!r}")
    return ttl


def is_user_message(decoded: list[dict[str, Any]]) -> bool:
    """Whether ``decoded`` (one decoded row, or none) is a user message: a turn's start."""
    return (
        bool(decoded)
        and decoded[0].get("role") == "user"
        and decoded[0].get("type", "message") == "message"
    )


# -- sessions listing ----------------------------------------------------------------------


def check_metadata_filter(metadata: Any) -> dict[str, Any]:
    """Return a ``list_sessions(metadata=...)`` filter as a dict (``{}`` for ``None``).

    Values are compared by JSON type: ``True`` does not match ``1``, ``1`` matches ``1.0``.

    Raises:
        TypeError: not a dict, a key that is not a str, or a value that is not a str,
            finite number, bool or None (the message names it).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata filter must be a dict, not {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata filter keys must be str, got {key!r}")
        if not (
            value is None
            or isinstance(value, (str, bool))
            or (isinstance(value, (int, float)) and math.isfinite(value))
        ):
            raise TypeError(
                f"metadata filter value for {key!r} must be a str, finite number, bool or "
                f"None, got {value!r:.80}"
            )
    return dict(metadata)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def metadata_matches(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether ``stored`` holds every key/value of a checked filter, compared by JSON type."""
    for key, value in wanted.items():
        if key not in stored:
            return False
        found = stored[key]
        if _json_kind(found) != _json_kind(value) or found != value:
            return False
    return True


def encode_cursor(updated_at: float, key: int | str) -> str:
    """An opaque paging cursor: the last session's ``updated_at`` and tie-breaking key."""
    return base64.urlsafe_b64encode(json.dumps([2, updated_at, key]).encode()).decode()


def decode_cursor(cursor: Any) -> tuple[float, Any]:
    """``(updated_at, key)`` from a cursor made by ``encode_cursor``.

    Raises:
        TypeError: not a str.
        ValueError: not a cursor this version made (the message quotes it).
    """
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a str from a previous page, got {cursor!r}")
    try:
        version, updated, key = json.loads(base64.urlsafe_b64decode(cursor).decode())
        if version != 2 or not check_timestamp(updated) or not isinstance(key, (int, str)):
            raise ValueError(version)
        return float(updated), key
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValueError(
            f"cursor {cursor!r:.60} is not a cursor returned by list_sessions_page"
        ) from None


# -- search, fork, prune -------------------------------------------------------------------


def check_search(query: Any, session_id: Any, limit: Any, highlight: Any) -> int:
    """Check ``search`` arguments; return ``limit``.

    Raises:
        TypeError: ``query`` not a str, ``highlight`` not a pair of str, bad types.
        ValueError: a bad ``session_id`` or a ``limit`` below 1.
    """
    from .._validate import check_session_id

    if not isinstance(query, str):
        raise TypeError(f"query must be a str, not {type(query).__name__}: {query!r:.80}")
    if session_id is not None:
        check_session_id(session_id)
    limit = check_count(limit, "limit", minimum=1)
    if not (
        isinstance(highlight, tuple)
        and len(highlight) == 2
        and all(isinstance(mark, str) for mark in highlight)
    ):
        raise TypeError(f"highlight must be a pair of str, got {highlight!r}")
    return int(limit)


def check_fork(session_id: Any, new_session_id: Any, at: Any) -> None:
    """Check ``fork`` arguments.

    Raises:
        TypeError, ValueError: a bad id, the same id twice, or ``at`` not an int >= 0.
    """
    from .._validate import check_session_id

    check_session_id(session_id)
    check_session_id(new_session_id)
    if session_id == new_session_id:
        raise ValueError(f"cannot fork session {session_id!r} into itself")
    if at is not None:
        check_count(at, "at", minimum=0)


def prune_cutoff(older_than: Any, keep_last: Any, batch: Any) -> float | None:
    """Check ``prune`` arguments; return ``older_than`` as a Unix time (or ``None``).

    Sessions last active before the returned time are old.

    Raises:
        TypeError: a bad argument type.
        ValueError: neither ``older_than`` nor ``keep_last``, a negative value, a naive
            ``datetime``, or ``batch`` below 1.
    """
    cutoff: float | None = None
    if older_than is None:
        pass
    elif isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise ValueError(f"older_than must not be negative, got {older_than!r}")
        cutoff = time.time() - older_than.total_seconds()
    elif isinstance(older_than, datetime):
        if older_than.tzinfo is None:
            raise ValueError(
                f"older_than must be timezone-aware (e.g. tzinfo=timezone.utc), got {older_than!r}"
            )
        cutoff = older_than.timestamp()
    else:
        raise TypeError(f"older_than must be a datetime, timedelta or None, got {older_than!r:.80}")
    if keep_last is not None:
        check_count(keep_last, "keep_last", minimum=0)
    check_count(batch, "batch", minimum=1)
    if cutoff is None and keep_last is None:
        raise ValueError("prune needs older_than, keep_last or both")
    return cutoff


# -- windows -------------------------------------------------------------------------------


def newest_window(rows: list[tuple[Any, str]], limit: int, where: str) -> list[dict[str, Any]]:
    """The tool-safe window of a session's newest ``limit`` messages, oldest first.

    Args:
        rows: ``(row_key, json_text)`` of up to ``limit + 1`` stored messages, newest
            first. The one past the window, if read, tells whether the window's first
            item lost its reasoning item (see ``window.tool_safe_tail``).
        limit: the window's size (1 or more).
        where: names the session, for the log message of a corrupt row.
    """
    from .._serialize import decode_messages
    from ..window import tool_safe_tail

    rows = rows[::-1]
    outside = len(rows) - limit if len(rows) > limit else 0
    earlier = decode_messages(rows[:outside], where)
    return tool_safe_tail(earlier + decode_messages(rows[outside:], where), len(earlier))


K = TypeVar("K")


def plan_idle_batch(
    sessions: Iterable[tuple[K, int]], batch: int
) -> tuple[list[K], tuple[K, int] | None]:
    """Which idle sessions one prune batch deletes, at most ``batch`` messages in all.

    Args:
        sessions: ``(key, message count)`` of idle sessions, in the order to delete them.
        batch: the most messages one batch deletes.

    Returns:
        The keys of the sessions deleted whole (while they fit), and, for the next one if
        it does not fit, ``(key, how many of its newest messages to delete)``: deleting
        the newest keeps what stays a dense 1..n history with a correct count.
    """
    whole: list[K] = []
    budget = batch
    for key, count in sessions:
        if count > budget:
            return whole, (key, budget)
        whole.append(key)
        budget -= count
        if budget == 0:
            break
    return whole, None


def plan_trim_batch(
    sessions: Iterable[tuple[K, int]], keep_last: int, batch: int
) -> list[tuple[K, int]]:
    """How many oldest messages one ``keep_last`` batch cuts from each session.

    Args:
        sessions: ``(key, message count)`` of sessions holding more than ``keep_last``.
        keep_last: how many newest messages each session keeps.
        batch: the most messages one batch deletes.

    Returns:
        ``(key, messages to cut)`` for each session this batch reaches, in order.
    """
    cuts: list[tuple[K, int]] = []
    budget = batch
    for key, count in sessions:
        cut = min(count - keep_last, budget)
        cuts.append((key, cut))
        budget -= cut
        if budget == 0:
            break
    return cuts
