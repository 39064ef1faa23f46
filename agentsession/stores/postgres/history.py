"""History management for ``PostgresStore``: session records, metadata, search and fork.

The storage work of ``PostgresStore``'s history hooks, as functions of a pooled
connection: each is one statement or runs in the caller's transaction. The public
methods and their argument checks are ``StoreBase``'s.

Metadata is ``jsonb``: a filter is one containment test (``@>``), which compares by JSON
type (``true`` does not match ``1``; ``1`` matches ``1.0``) and is answered by a GIN
index. Being jsonb, stored metadata comes back with its keys in jsonb's order, and each
number as the same value (a float written with an exponent may come back as an int).

Search is PostgreSQL's own full-text search with the ``simple`` configuration: words are
lower-cased, never stemmed, and no word is a stop word, so it works the same in any
language. Hits are ordered by ``ts_rank_cd`` (cover density, divided by 1 + the log of
the message's length), reported negated as ``SearchHit.rank`` so that lower is more
relevant, as with SQLite's bm25.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ...protocol import SessionInfo
from ..base import info_from_row
from .base import (
    MAX_ROWS,
    NOW,
    Conn,
    from_db_id,
    metadata_for_db,
    metadata_from_db,
    storable_text,
)
from .schema import Tables

__all__ = ("fork", "search", "search_sql", "session_info", "sessions", "upsert_metadata")

_INFO = "s.session_id, s.message_count, s.created_at, s.updated_at, s.metadata::text"

#: How long a snippet is, in words (ts_headline's MaxWords / MinWords).
_SNIPPET_WORDS = (16, 6)


def _info(row: tuple[Any, ...]) -> SessionInfo:
    session_id, count, created, updated, metadata = row[:5]
    return info_from_row(
        (from_db_id(session_id), count, created, updated, metadata_from_db(metadata))
    )


def sessions(
    conn: Conn,
    t: Tables,
    wanted: dict[str, Any],
    after: tuple[float, Any] | None,
    limit: int | None,
) -> list[tuple[SessionInfo, float, int]]:
    """``StoreBase._sessions``: keyset paging on the ``(updated_at, id)`` index; a
    metadata filter is one containment test (``@>``), answered by a GIN index."""
    clauses: list[str] = []
    params: list[Any] = []
    if after is not None:
        clauses.append("(s.updated_at, s.id) < (%s, %s)")
        params += list(after)
    if wanted:
        clauses.append("s.metadata @> %s::jsonb")
        params.append(metadata_for_db(wanted, "metadata filter"))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    page = ""
    if limit is not None:
        page = "LIMIT %s"
        params.append(min(limit, MAX_ROWS))
    rows = conn.execute(
        f"SELECT {_INFO}, s.id FROM {t.sessions} s {where} "
        f"ORDER BY s.updated_at DESC, s.id DESC {page}",
        params,
    ).fetchall()
    return [(_info(row), row[3], row[5]) for row in rows]


def session_info(conn: Conn, t: Tables, key: str) -> SessionInfo | None:
    row = conn.execute(f"SELECT {_INFO} FROM {t.sessions} s WHERE s.session_id = %s", (key,))
    found = row.fetchone()
    return None if found is None else _info(found)


def upsert_metadata(t: Tables, *, merge: bool) -> str:
    """SQL storing ``%(metadata)s`` as the session's metadata (or, with ``merge``,
    merging it in and deleting the keys ``%(remove)s``), creating the session's
    record if need be: one statement under the row lock. It returns the stored metadata."""
    fresh = stored = "%(metadata)s::jsonb"
    if merge:
        fresh = f"{fresh} - %(remove)s::text[]"
        stored = f"(t.metadata || {stored}) - %(remove)s::text[]"
    return (
        f"INSERT INTO {t.sessions} AS t (session_id, created_at, updated_at, "
        f"message_count, last_seq, metadata) SELECT %(key)s, n.now, n.now, 0, 0, {fresh} "
        f"FROM (SELECT {NOW} AS now) n ON CONFLICT (session_id) DO UPDATE SET "
        f"metadata = {stored} RETURNING metadata::text"
    )


def _headline_options(highlight: tuple[str, str]) -> str:
    """ts_headline's options with the caller's marks (quoted, so any text is safe)."""
    start, stop = (
        '"' + storable_text(mark, "highlight").replace('"', '""') + '"' for mark in highlight
    )
    most, least = _SNIPPET_WORDS
    return f"StartSel={start}, StopSel={stop}, MaxWords={most}, MinWords={least}"


def search_sql(
    t: Tables, query: str, key: str | None, limit: int, raw: bool, highlight: tuple[str, str]
) -> tuple[str, dict[str, Any]]:
    """The search statement and its parameters (raises ``ValueError`` for bad marks or a
    raw query PostgreSQL text cannot hold)."""
    options = _headline_options(highlight)
    if raw:
        try:
            text = storable_text(query, "query")
        except ValueError as exc:
            raise ValueError(f"bad full-text query {query!r}: {exc}") from None
        parse = "to_tsquery('simple', %(query)s)"
    else:
        text = query.replace("\x00", " ")
        parse = "plainto_tsquery('simple', %(query)s)"
    within = (
        ""
        if key is None
        else f"AND m.session = (SELECT id FROM {t.sessions} WHERE session_id = %(key)s)"
    )
    # Rank and pick the best `limit` first; only those get a snippet (ts_headline
    # re-reads the text, so it is the costly part).
    sql = (
        "SELECT s.session_id, h.seq, h.message, "
        "ts_headline('simple', h.search_text, h.q, %(options)s), -h.rank FROM ("
        "SELECT m.session, m.seq, m.message, m.search_text, q.q, "
        "ts_rank_cd(m.search_vector, q.q, 1) AS rank "
        f"FROM {t.messages} m, {parse} AS q(q) WHERE m.search_vector @@ q.q {within} "
        "ORDER BY rank DESC, m.session, m.seq LIMIT %(limit)s"
        f") h JOIN {t.sessions} s ON s.id = h.session ORDER BY h.rank DESC, h.session, h.seq"
    )
    params = {"query": text, "key": key, "options": options, "limit": min(limit, MAX_ROWS)}
    return sql, params


def search(
    conn: Conn, sql: str, params: dict[str, Any], query: str, raw: bool
) -> list[tuple[str, int, str, str, float]]:
    """Run a statement of ``search_sql``; the hits' session ids as given."""
    try:
        rows = conn.execute(sql, params).fetchall()
    except psycopg.errors.SyntaxError as exc:
        if raw:  # only a raw query can have a syntax of its own
            raise ValueError(f"bad full-text query {query!r}: {exc}") from None
        raise
    return [
        (from_db_id(found_in), seq, message, snippet, float(rank))
        for found_in, seq, message, snippet, rank in rows
    ]


def fork(
    conn: Conn,
    t: Tables,
    keys: tuple[str, str],
    session_id: str,
    new_session_id: str,
    at: int | None,
) -> int:
    """Copy the history up to ``at`` (in the caller's transaction), holding the source's
    row (shared: readers and other forks go on, writers of the source wait) and the
    target's."""
    source_key, target_key = keys
    source = conn.execute(
        f"SELECT id, message_count FROM {t.sessions} WHERE session_id = %s FOR SHARE",
        (source_key,),
    ).fetchone()
    if source is None:
        raise ValueError(f"no session {session_id!r} to fork")
    source_id, count = source
    if at is not None and at > count:
        raise ValueError(f"at={at} is past the end of session {session_id!r} ({count} messages)")
    copied = count if at is None else at
    created = conn.execute(
        f"INSERT INTO {t.sessions} AS t (session_id, created_at, updated_at, "
        "message_count, last_seq, metadata) SELECT %(key)s, n.now, n.now, %(count)s, "
        f"%(count)s, src.metadata FROM (SELECT {NOW} AS now) n, {t.sessions} src "
        "WHERE src.id = %(source)s ON CONFLICT (session_id) DO UPDATE SET "
        "updated_at = excluded.updated_at, message_count = excluded.message_count, "
        "last_seq = excluded.last_seq, metadata = excluded.metadata "
        "WHERE t.message_count = 0 RETURNING id",
        {"key": target_key, "count": copied, "source": source_id},
    ).fetchone()
    if created is None:
        held = conn.execute(
            f"SELECT message_count FROM {t.sessions} WHERE session_id = %s",
            (target_key,),
        ).fetchone()
        raise ValueError(
            f"session {new_session_id!r} already has {held[0] if held else 'some'} "
            "messages; fork into a new or empty session"
        )
    conn.execute(
        f"INSERT INTO {t.messages} (session, seq, created_at, message, search_text) "
        f"SELECT %s, seq, created_at, message, search_text FROM {t.messages} "
        "WHERE session = %s AND seq <= %s",
        (created[0], source_id, copied),
    )
    return int(copied)
