"""What the history mixins share: the store hooks they use and argument checks.

The mixins (``_sqlite_history``, ``_sqlite_retention``, ``_sqlite_jsonl``) are bases of
``SQLiteStore``; they reach the database only through its ``_read`` / ``_write`` helpers,
so they follow its connection, locking and error-mapping rules.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._serialize import _encoder, _find_bad_value
from ..exceptions import StoreError
from ..protocol import SessionInfo
from ._sqlite_schema import LOCKS

__all__ = (
    "NOT_LEASED",
    "Progress",
    "StoreCore",
    "check_count",
    "dump_metadata",
    "info_from_row",
    "load_metadata",
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
