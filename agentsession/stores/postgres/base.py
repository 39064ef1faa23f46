"""What the PostgreSQL store's modules share: the server's clock, SQL fragments, and the
conversions that let every valid value live in PostgreSQL text and jsonb.

PostgreSQL text cannot hold NUL, and neither can a jsonb string; psycopg cannot send a
lone surrogate at all. Session ids may hold NUL (``SQLiteStore`` stores them), so ids and
metadata strings are stored with an escape: NUL becomes U+FFFF ``"0"`` and U+FFFF
becomes U+FFFF U+FFFF, and they are turned back when read. Any id or string without
those two characters (all real ones) is stored exactly as given, so the tables stay
readable and queryable with plain SQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg

from ..._validate import check_session_id
from ..base import dump_metadata
from .lease import not_leased_sql
from .schema import Tables

__all__ = (
    "MAX_ROWS",
    "NOW",
    "Conn",
    "db_id",
    "from_db_id",
    "metadata_for_db",
    "metadata_from_db",
    "not_leased",
    "searchable",
    "storable_text",
)

#: A pooled connection, as the store's work functions receive it.
Conn = psycopg.Connection[Any]

#: SQL: the server's clock as Unix seconds. Every time the store writes comes from here,
#: never from the app server's clock.
NOW = "date_part('epoch', clock_timestamp())"

#: The largest LIMIT PostgreSQL takes (a bigint); any larger limit means "all rows".
MAX_ROWS = 2**62

_ESCAPE = "\uffff"
_NUL_CODE = _ESCAPE + "0"

#: Only the first this many bytes of a message's words are indexed for search, so that
#: no message can exceed PostgreSQL's 1 MB tsvector limit (the index takes up to about
#: twice the text's size).
SEARCH_BYTES = 256 * 1024


def not_leased(tables: Tables) -> str:
    """SQL condition on a sessions row ``s``: no run, in any process, holds its lease now."""
    return not_leased_sql(tables.name)


def _escape(text: str) -> str:
    if "\x00" in text or _ESCAPE in text:
        return text.replace(_ESCAPE, _ESCAPE + _ESCAPE).replace("\x00", _NUL_CODE)
    return text


def _unescape(text: str) -> str:
    if _ESCAPE not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == _ESCAPE:
            following = next(chars, "")
            out.append("\x00" if following == "0" else following)
        else:
            out.append(char)
    return "".join(out)


def db_id(value: Any, name: str = "session_id") -> str:
    """Check a session id (as every store does) or a lease owner; return its stored text.

    Raises:
        TypeError: not a str.
        ValueError: an empty session id, or a lone surrogate.
    """
    if name == "session_id":
        check_session_id(value)
    elif not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}: {value!r}")
    else:
        storable_text(value.replace("\x00", ""), name)
    return _escape(value)


def from_db_id(text: str) -> str:
    """The session id stored as ``text``."""
    return _unescape(text)


def _map_strings(value: Any, convert: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, dict):
        return {convert(key): _map_strings(inner, convert) for key, inner in value.items()}
    if isinstance(value, list):
        return [_map_strings(inner, convert) for inner in value]
    return value


def metadata_for_db(metadata: Any, name: str = "metadata") -> str:
    """JSON text of a metadata object (or filter) that jsonb can store exactly.

    Raises:
        TypeError: not a dict of JSON values (see ``dump_metadata``).
        ValueError: a string holds a lone surrogate, which PostgreSQL cannot store.
    """
    text = dump_metadata(metadata, name)
    storable_text(text, name)
    if "\\u0000" in text or _ESCAPE in text:
        text = dump_metadata(_map_strings(json.loads(text), _escape), name)
    return text


def metadata_from_db(text: str) -> str:
    """The metadata JSON text as it was given, from what ``metadata_for_db`` stored."""
    if _ESCAPE not in text:
        return text
    return dump_metadata(_map_strings(json.loads(text), _unescape))


def storable_text(text: str, name: str) -> str:
    """Return ``text`` if PostgreSQL text can hold it (no NUL, no lone surrogate).

    Raises:
        ValueError: it cannot; the message names ``name``.
    """
    if "\x00" in text:
        raise ValueError(f"{name} holds a NUL character, which PostgreSQL text cannot hold")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{name} holds a lone surrogate, which PostgreSQL cannot store: {text!r:.80}"
        ) from None
    return text


def searchable(text: str) -> str:
    """``message_text`` output as stored for search: NUL made a space, capped in size."""
    if "\x00" in text:
        text = text.replace("\x00", " ")
    if len(text) * 4 > SEARCH_BYTES:  # cheap test first: UTF-8 takes at most 4 bytes
        data = text.encode("utf-8", "replace")
        if len(data) > SEARCH_BYTES:
            text = data[:SEARCH_BYTES].decode("utf-8", "ignore")
    return text
