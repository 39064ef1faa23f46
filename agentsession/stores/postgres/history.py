"""History management for ``PostgresStore``: session records, metadata, search and fork.

``PostgresHistoryMixin`` is a base class of ``PostgresStore``; with its own bases it adds
retention (``prune``, ``expire_idle``, ``vacuum``, see ``stores.postgres.retention``) and JSON
Lines export and import (see ``stores.postgres.jsonl``). Every method is blocking and
thread-safe, like the rest of the store, and each is one statement or one transaction;
``StoreMemory`` has an async twin of each.

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

from collections.abc import Mapping
from typing import Any

import psycopg

from ..._serialize import decode_messages
from ...protocol import SearchHit, SessionInfo, SessionPage
from ..base import (
    check_count,
    check_fork,
    check_metadata_filter,
    check_search,
    decode_cursor,
    encode_cursor,
    info_from_row,
    load_metadata,
)
from .base import (
    MAX_ROWS,
    NOW,
    Conn,
    db_id,
    from_db_id,
    metadata_for_db,
    metadata_from_db,
    storable_text,
)
from .jsonl import PostgresJsonlMixin
from .retention import PostgresRetentionMixin

__all__ = ("PostgresHistoryMixin",)

_INFO = "s.session_id, s.message_count, s.created_at, s.updated_at, s.metadata::text"

#: How long a snippet is, in words (ts_headline's MaxWords / MinWords).
_SNIPPET_WORDS = (16, 6)


def _info(row: tuple[Any, ...]) -> SessionInfo:
    session_id, count, created, updated, metadata = row[:5]
    return info_from_row(
        (from_db_id(session_id), count, created, updated, metadata_from_db(metadata))
    )


def _metadata_where(metadata: Any) -> tuple[list[str], list[Any]]:
    """SQL conditions on sessions row ``s`` holding every key/value of ``metadata``."""
    wanted = check_metadata_filter(metadata)
    if not wanted:
        return [], []
    return ["s.metadata @> %s::jsonb"], [metadata_for_db(wanted, "metadata filter")]


def _headline_options(highlight: tuple[str, str]) -> str:
    """ts_headline's options with the caller's marks (quoted, so any text is safe)."""
    start, stop = (
        '"' + storable_text(mark, "highlight").replace('"', '""') + '"' for mark in highlight
    )
    most, least = _SNIPPET_WORDS
    return f"StartSel={start}, StopSel={stop}, MaxWords={most}, MinWords={least}"


class PostgresHistoryMixin(PostgresRetentionMixin, PostgresJsonlMixin):
    """Sessions as records, metadata, full-text search, fork; plus retention and JSONL."""

    # -- sessions and metadata -------------------------------------------------------------

    def list_sessions(self, *, metadata: Mapping[str, Any] | None = None) -> list[SessionInfo]:
        """Return every session (or those matching ``metadata``), newest activity first.

        Args:
            metadata: keep only sessions whose metadata holds every one of these
                key/value pairs (values: str, number, bool or None; compared by JSON
                type, so ``True`` does not match ``1``).

        Raises:
            TypeError: a bad ``metadata`` filter.
            ValueError: a filter string holding a lone surrogate.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        clauses, params = _metadata_where(metadata)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            f"SELECT {_INFO} FROM {self._tables.sessions} s {where} "
            "ORDER BY s.updated_at DESC, s.id DESC"
        )
        return [
            _info(row) for row in self._read(lambda conn: conn.execute(query, params).fetchall())
        ]

    def list_sessions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionPage:
        """Return one page of sessions, newest activity first, and the next page's cursor.

        Paging is by keyset on the ``(updated_at, id)`` index, so every page costs the
        same however deep. A session that becomes active while you page moves to the
        front: it is not returned twice, but if it had not been reached yet it is not
        returned at all in this walk.

        Args:
            limit: at most this many sessions per page (1 or more).
            cursor: ``next_cursor`` of the previous page; ``None`` for the first page.
            metadata: the same filter as ``list_sessions``; pass it on every page.

        Raises:
            TypeError: a bad ``limit``, ``cursor`` or ``metadata``.
            ValueError: ``limit`` below 1, or ``cursor`` was not made by this method.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        limit = check_count(limit, "limit", minimum=1)
        clauses, params = _metadata_where(metadata)
        if cursor is not None:
            updated, row_id = decode_cursor(cursor)
            if isinstance(row_id, bool) or not isinstance(row_id, int):
                raise ValueError(f"cursor {cursor!r:.60} was not made by this PostgreSQL store")
            clauses.insert(0, "(s.updated_at, s.id) < (%s, %s)")
            params[:0] = [updated, row_id]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            f"SELECT {_INFO}, s.id FROM {self._tables.sessions} s {where} "
            "ORDER BY s.updated_at DESC, s.id DESC LIMIT %s"
        )
        params.append(min(limit + 1, MAX_ROWS))
        rows = self._read(lambda conn: conn.execute(query, params).fetchall())
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1][3], page[-1][5]) if len(rows) > limit else None
        return SessionPage([_info(row) for row in page], next_cursor)

    def session_info(self, session_id: str) -> SessionInfo | None:
        """Return what the store knows about one session, or ``None`` if it has no record.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        key = db_id(session_id)
        query = f"SELECT {_INFO} FROM {self._tables.sessions} s WHERE s.session_id = %s"
        row = self._read(lambda conn: conn.execute(query, (key,)).fetchone())
        return None if row is None else _info(row)

    def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace the session's metadata with ``metadata`` (a JSON object).

        Creates the session's record (with no messages) if it has none yet. Changing
        metadata is not activity: ``updated_at`` stays as it was. One statement.

        Raises:
            TypeError: ``metadata`` is not a dict of JSON values; nothing is changed.
            ValueError: a bad ``session_id``, or a string in ``metadata`` holding a
                lone surrogate (which PostgreSQL cannot store).
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        key = db_id(session_id)
        text = metadata_for_db(metadata)
        query = self._upsert_metadata(merge=False)
        self._run(lambda conn: conn.execute(query, {"key": key, "metadata": text}))

    def update_metadata(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        remove: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Merge ``changes`` into the session's metadata (top-level keys); return the result.

        The merge is one statement under the session's row lock, so concurrent updates
        of different keys, from any host, never lose each other. Creates the session's
        record (with no messages) if it has none yet; ``updated_at`` does not change.

        Args:
            session_id: the session.
            changes: keys to set (a value ``None`` stores JSON null; it does not delete).
            remove: keys to delete (missing keys are ignored).

        Raises:
            TypeError: ``changes`` is not a dict of JSON values, or a key in ``remove``
                is not a str; nothing is changed.
            ValueError: a bad ``session_id``, or a lone surrogate in a string.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        key = db_id(session_id)
        text = metadata_for_db(changes, "changes")
        if isinstance(remove, str) or not all(isinstance(name, str) for name in remove):
            raise TypeError(f"remove must be a list of str keys, got {remove!r}")
        gone = [db_id(name, "remove") for name in remove]
        query = self._upsert_metadata(merge=True)
        row = self._run(
            lambda conn: conn.execute(
                query, {"key": key, "metadata": text, "remove": gone}
            ).fetchone()
        )
        assert row is not None
        return load_metadata(metadata_from_db(row[0]), session_id)

    def _upsert_metadata(self, *, merge: bool) -> str:
        """SQL storing ``%(metadata)s`` as the session's metadata (or, with ``merge``,
        merging it in and deleting the keys ``%(remove)s``), creating the session's
        record if need be. It returns the stored metadata."""
        t = self._tables
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

    # -- search ----------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        limit: int = 20,
        raw: bool = False,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]:
        """Find messages by their words, best match first (PostgreSQL full-text search).

        Args:
            query: words that must all appear (in any order, any case). Nothing in it is
                query syntax unless ``raw`` is true, so any text is safe to pass.
            session_id: search this session only; ``None`` searches every session.
            limit: at most this many hits (1 or more).
            raw: pass ``query`` to ``to_tsquery('simple', ...)`` as is: ``&``, ``|``,
                ``!``, ``<->`` (followed by), ``'a phrase'``, ``prefix:*``.
            highlight: the marks put around matched words in ``snippet``.

        Returns:
            The hits (``rank``: the negated ``ts_rank_cd``, so lower is more relevant);
            ``[]`` when ``query`` has no words. Only the first 256 KiB of a message's
            text is indexed.

        Raises:
            TypeError: a bad argument type.
            ValueError: a bad ``session_id`` or ``limit``, highlight marks holding NUL,
                or (``raw`` only) a query PostgreSQL cannot parse; the message quotes it.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        limit = check_search(query, session_id, limit, highlight)
        key = None if session_id is None else db_id(session_id)
        options = _headline_options(highlight)
        if raw:
            if not query.strip():
                return []
            try:
                text = storable_text(query, "query")
            except ValueError as exc:
                raise ValueError(f"bad full-text query {query!r}: {exc}") from None
            parse = "to_tsquery('simple', %(query)s)"
        else:
            text = query.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
            if not text.split():
                return []
            parse = "plainto_tsquery('simple', %(query)s)"
        t = self._tables
        within = (
            ""
            if key is None
            else (f"AND m.session = (SELECT id FROM {t.sessions} WHERE session_id = %(key)s)")
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

        def read(conn: Conn) -> list[tuple[str, int, str, str, float]]:
            try:
                return conn.execute(sql, params).fetchall()
            except psycopg.errors.SyntaxError as exc:
                if raw:  # only a raw query can have a syntax of its own
                    raise ValueError(f"bad full-text query {query!r}: {exc}") from None
                raise

        hits: list[SearchHit] = []
        for found_in, seq, message, snippet, rank in self._read(read):
            owner = from_db_id(found_in)
            decoded = decode_messages([(seq, message)], f"session {owner!r}")
            if decoded:
                hits.append(SearchHit(owner, seq, decoded[0], snippet, float(rank)))
        return hits

    # -- fork ------------------------------------------------------------------------------

    def fork(self, session_id: str, new_session_id: str, *, at: int | None = None) -> int:
        """Copy the session's history up to position ``at`` into a new session.

        One transaction, holding the source's row (shared: readers and other forks go
        on, writers of the source wait) and the target's. The copy keeps each message's
        ``created_at`` and the source's metadata (replacing any the target's record
        had); the new session is created, and last active, now. The source is not
        changed.

        Args:
            session_id: the session to copy from.
            new_session_id: the session to create; it must not hold messages yet.
            at: copy messages 1..``at`` (1-based, inclusive); ``None`` copies them all,
                ``0`` none (the new session then has only the metadata).

        Returns:
            How many messages were copied.

        Raises:
            TypeError: a bad argument type.
            ValueError: a bad id, the same id twice, no session ``session_id``,
                ``new_session_id`` already holds messages, or ``at`` is negative or
                past the source's last message. Nothing is changed.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_fork(session_id, new_session_id, at)
        source_key, target_key = db_id(session_id), db_id(new_session_id)
        t = self._tables

        def write(conn: Conn) -> int:
            source = conn.execute(
                f"SELECT id, message_count FROM {t.sessions} WHERE session_id = %s FOR SHARE",
                (source_key,),
            ).fetchone()
            if source is None:
                raise ValueError(f"no session {session_id!r} to fork")
            source_id, count = source
            if at is not None and at > count:
                raise ValueError(
                    f"at={at} is past the end of session {session_id!r} ({count} messages)"
                )
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

        return self._write(write)
