"""History management for ``SQLiteStore``: session records, metadata, search and fork.

The storage work of ``SQLiteStore``'s history hooks, as functions of a connection: the
store runs each in one read (``_read``) or one write transaction (``_write``); the public
methods and their argument checks are ``StoreBase``'s.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ...protocol import SessionInfo
from ..base import dump_metadata, info_from_row, load_metadata, merge_metadata
from .schema import MESSAGES, MESSAGES_FTS, SESSIONS

__all__ = (
    "fork",
    "fts_phrase_query",
    "put_metadata",
    "search",
    "session_info",
    "sessions",
    "update_metadata",
)

_JSON_CONSTANT = {None: "null", True: "true", False: "false"}
_INFO_COLUMNS = "s.session_id, s.message_count, s.created_at, s.updated_at, s.metadata"


def fts_phrase_query(query: str) -> str:
    """``query`` as an FTS5 query of plain words, all required: nothing in it is syntax.

    Each whitespace-separated word becomes a quoted FTS5 string (``"`` doubled), so
    ``AND``, ``OR``, ``NOT``, ``NEAR``, ``*``, ``:``, ``^``, quotes and parentheses are
    searched for as text, never parsed. A word like ``e-mail`` matches as a phrase.
    """
    words = query.replace("\x00", " ").split()  # SQLite would end the query at a NUL
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def _metadata_where(wanted: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """SQL conditions on sessions row ``s`` matching every key/value of a checked filter."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, value in wanted.items():
        extra: list[Any] = []
        if value is None or isinstance(value, bool):
            kind = f"j.type = '{_JSON_CONSTANT[value]}'"
        elif isinstance(value, str):
            kind, extra = "j.type = 'text' AND j.atom = ?", [value]
        else:
            kind, extra = "j.type IN ('integer', 'real') AND j.atom = ?", [value]
        # json_each rather than a JSON path, so that keys holding dots or quotes work.
        clauses.append(f"EXISTS (SELECT 1 FROM json_each(s.metadata) j WHERE j.key = ? AND {kind})")
        params += [key, *extra]
    if clauses:
        clauses.insert(0, "json_valid(s.metadata)")
    return clauses, params


def sessions(
    conn: sqlite3.Connection,
    wanted: dict[str, Any],
    after: tuple[float, Any] | None,
    limit: int | None,
) -> list[tuple[SessionInfo, float, int]]:
    """``StoreBase._sessions``: keyset paging on ``(updated_at, id)``."""
    clauses, params = _metadata_where(wanted)
    if after is not None:
        clauses.insert(0, "(s.updated_at, s.id) < (?, ?)")
        params[:0] = list(after)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    page = "" if limit is None else f"LIMIT {int(limit)}"
    rows = conn.execute(
        f"SELECT {_INFO_COLUMNS}, s.id FROM {SESSIONS} s {where} "
        f"ORDER BY s.updated_at DESC, s.id DESC {page}",
        params,
    ).fetchall()
    return [(info_from_row(row[:5]), row[3], row[5]) for row in rows]


def session_info(conn: sqlite3.Connection, session_id: str) -> SessionInfo | None:
    row = conn.execute(
        f"SELECT {_INFO_COLUMNS} FROM {SESSIONS} s WHERE s.session_id = ?", (session_id,)
    ).fetchone()
    return None if row is None else info_from_row(row)


def put_metadata(conn: sqlite3.Connection, session_id: str, text: str) -> None:
    """Store metadata JSON ``text``, creating the session's record if need be."""
    now = time.time()
    conn.execute(
        f"INSERT INTO {SESSIONS} (session_id, created_at, updated_at, message_count, "
        "last_seq, metadata) VALUES (?, ?, ?, 0, 0, ?) "
        "ON CONFLICT (session_id) DO UPDATE SET metadata = excluded.metadata",
        (session_id, now, now, text),
    )


def update_metadata(
    conn: sqlite3.Connection, session_id: str, changes: dict[str, Any], remove: list[str]
) -> dict[str, Any]:
    """Read, merge and write the metadata (in the caller's write transaction)."""
    row = conn.execute(
        f"SELECT metadata FROM {SESSIONS} WHERE session_id = ?", (session_id,)
    ).fetchone()
    merged = merge_metadata(
        {} if row is None else load_metadata(row[0], session_id), changes, remove
    )
    put_metadata(conn, session_id, dump_metadata(merged))
    return merged


def search(
    conn: sqlite3.Connection,
    query: str,
    session_id: str | None,
    limit: int,
    raw: bool,
    highlight: tuple[str, str],
) -> list[tuple[str, int, str, str, float]]:
    """FTS5 search, bm25 ranking; ``raw`` queries are FTS5 syntax (``"exact phrase"``,
    ``OR``, ``NOT``, ``prefix*``, ``NEAR(a b)``)."""
    match = query if raw else fts_phrase_query(query)
    if not match.strip():
        return []
    where = "" if session_id is None else "AND s.session_id = ?"
    params: list[Any] = [*highlight, match]
    if session_id is not None:
        params.append(session_id)
    try:
        return conn.execute(
            f"SELECT s.session_id, m.seq, m.message, "
            f"snippet({MESSAGES_FTS}, 0, ?, ?, '…', 16), bm25({MESSAGES_FTS}) "
            f"FROM {MESSAGES_FTS} JOIN {MESSAGES} m ON m.id = {MESSAGES_FTS}.rowid "
            f"JOIN {SESSIONS} s ON s.id = m.session "
            f"WHERE {MESSAGES_FTS} MATCH ? {where} "
            f"ORDER BY bm25({MESSAGES_FTS}), m.id LIMIT {int(limit)}",
            params,
        ).fetchall()
    except sqlite3.OperationalError as exc:
        # With raw syntax, any failure but a busy database is the query's fault.
        if raw and "locked" not in str(exc) and "busy" not in str(exc):
            raise ValueError(f"bad full-text query {query!r}: {exc}") from None
        raise


def fork(conn: sqlite3.Connection, session_id: str, new_session_id: str, at: int | None) -> int:
    """Copy the history up to ``at`` (in the caller's write transaction)."""
    source = conn.execute(
        f"SELECT id, message_count, metadata FROM {SESSIONS} WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    if source is None:
        raise ValueError(f"no session {session_id!r} to fork")
    source_id, count, metadata = source
    if at is not None and at > count:
        raise ValueError(f"at={at} is past the end of session {session_id!r} ({count} messages)")
    target = conn.execute(
        f"SELECT message_count FROM {SESSIONS} WHERE session_id = ?", (new_session_id,)
    ).fetchone()
    if target is not None and target[0] > 0:
        raise ValueError(
            f"session {new_session_id!r} already has {target[0]} messages; "
            "fork into a new or empty session"
        )
    copied = count if at is None else at
    now = time.time()
    (new_id,) = conn.execute(
        f"INSERT INTO {SESSIONS} (session_id, created_at, updated_at, message_count, "
        "last_seq, metadata) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO "
        "UPDATE SET updated_at = excluded.updated_at, message_count = "
        "excluded.message_count, last_seq = excluded.last_seq, metadata = "
        "excluded.metadata RETURNING id",
        (new_session_id, now, now, copied, copied, metadata),
    ).fetchone()
    conn.execute(
        f"INSERT INTO {MESSAGES} (session, seq, created_at, message, text) "
        f"SELECT ?, seq, created_at, message, text FROM {MESSAGES} "
        "WHERE session = ? AND seq <= ? ORDER BY seq",
        (new_id, source_id, copied),
    )
    return int(copied)
