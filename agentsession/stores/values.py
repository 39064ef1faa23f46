"""The values every store writes besides messages: metadata JSON text (and its filters)
and timestamps.

A leaf module (it imports no store), so that ``stores.base`` and ``stores.jsonl`` can
both use it. ``stores.base`` re-exports everything here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from .._serialize import _encoder, _find_bad_value

__all__ = (
    "Progress",
    "check_text",
    "check_timestamp",
    "dump_metadata",
    "find_lone_surrogate",
    "load_metadata",
    "metadata_matches",
)

#: Called with how many items (messages, sessions) were just done; for progress bars.
Progress = Callable[[int], None]

logger = logging.getLogger("agentsession")


def check_timestamp(value: Any) -> bool:
    """Whether ``value`` is a finite number of seconds (``bool`` is not)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_lone_surrogate(value: Any) -> str | None:
    """The first string (a key or a value) inside ``value`` holding a lone surrogate."""
    if isinstance(value, str):
        return value if _has_lone_surrogate(value) else None
    if isinstance(value, Mapping):
        for key, inner in value.items():
            found = find_lone_surrogate(key) or find_lone_surrogate(inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = find_lone_surrogate(inner)
            if found is not None:
                return found
    return None


def check_text(value: Any, name: str) -> str:
    """Return ``value`` if it is a str that UTF-8 can encode (no lone surrogate).

    Raises:
        TypeError: not a str.
        ValueError: it holds a lone surrogate; the message names ``name`` and the value.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}: {value!r:.80}")
    if _has_lone_surrogate(value):
        raise ValueError(
            f"{name} must be valid Unicode text (no lone surrogates), got {value!r:.80}"
        )
    return value


def dump_metadata(metadata: Any, name: str = "metadata") -> str:
    """Encode a metadata object to JSON text, or raise naming the bad value.

    The one rule for every engine: metadata is a JSON object of valid Unicode text.
    (Messages may hold lone surrogates: they are stored as ``\\u`` escapes of the JSON
    text and read back identical. Metadata is queried as JSON by the engines, and
    PostgreSQL's jsonb cannot hold one, so a lone surrogate is refused everywhere.)

    Raises:
        TypeError: not a dict with string keys, or a value JSON cannot represent.
        ValueError: a key or string value holds a lone surrogate (the message shows it).
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
            text = _encoder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"{name} is not JSON-serializable ({exc}): {value!r:.80}") from exc
    if bad is not None:
        raise TypeError(
            f"{name} is not JSON-serializable: {bad!r:.80} ({type(bad).__name__}) in {value!r:.80}"
        )
    if _has_lone_surrogate(text):
        raise ValueError(
            f"{name} must be valid Unicode text, but holds a lone surrogate: "
            f"{find_lone_surrogate(value)!r:.80} in {value!r:.80}"
        )
    return text


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
