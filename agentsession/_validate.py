"""Checks of caller-supplied arguments shared by every store and memory."""

from __future__ import annotations

from typing import Any

__all__ = ("check_limit", "check_session_id")


def check_session_id(session_id: Any) -> str:
    """Return ``session_id`` if it is a non-empty string.

    Raises:
        TypeError: it is not a ``str``.
        ValueError: it is empty.
    """
    if not isinstance(session_id, str):
        raise TypeError(
            f"session_id must be a str, not {type(session_id).__name__}: {session_id!r}"
        )
    if not session_id:
        raise ValueError("session_id must be a non-empty string, got ''")
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"session_id must be valid Unicode text (no lone surrogates), got {session_id!r}"
        ) from None
    return session_id


def check_limit(limit: Any) -> int | None:
    """Return ``limit`` if it is ``None`` or a whole number of at least 0.

    Raises:
        TypeError: it is not an ``int`` (``bool`` is refused too).
        ValueError: it is negative.
    """
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int or None, not {type(limit).__name__}: {limit!r}")
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    return limit
