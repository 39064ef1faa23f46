"""History management for ``SQLiteStore``: session records, metadata, search and fork.

``SQLiteHistoryMixin`` is a base class of ``SQLiteStore``; with its own bases it adds
retention (``prune``, ``expire_idle``, ``vacuum``, see ``stores.sqlite.retention``) and JSON
Lines export and import (see ``stores.sqlite.jsonl``). Every method is blocking and
thread-safe, like the rest of the store; ``StoreMemory`` has an async twin of each.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from ..._serialize import decode_messages
from ..._validate import check_session_id
from ...protocol import SearchHit, SessionInfo, SessionPage
from ..base import (
    check_count,
    check_fork,
    check_metadata_filter,
    check_search,
    decode_cursor,
    dump_metadata,
    encode_cursor,
    info_from_row,
    load_metadata,
)
from .jsonl import SQLiteJsonlMixin
from .retention import RetentionMixin
from .schema import MESSAGES, MESSAGES_FTS, SESSIONS

__all__ = ("SQLiteHistoryMixin", "fts_phrase_query")

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


def _metadata_where(metadata: Any) -> tuple[list[str], list[Any]]:
    """SQL conditions on sessions row ``s`` matching every key/value of ``metadata``."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, value in check_metadata_filter(metadata).items():
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


class SQLiteHistoryMixin(RetentionMixin, SQLiteJsonlMixin):
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
            StoreClosed, StoreError: the store is closed or the database failed.
        """
        clauses, params = _metadata_where(metadata)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM {SESSIONS} s {where} "
                "ORDER BY s.updated_at DESC, s.id DESC",
                params,
            ).fetchall()
        )
        return [info_from_row(row) for row in rows]

    def list_sessions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionPage:
        """Return one page of sessions, newest activity first, and the next page's cursor.

        Paging is by keyset, so every page costs the same however deep. A session that
        becomes active while you page moves to the front: it is not returned twice, but
        if it had not been reached yet it is not returned at all in this walk.

        Args:
            limit: at most this many sessions per page (1 or more).
            cursor: ``next_cursor`` of the previous page; ``None`` for the first page.
            metadata: the same filter as ``list_sessions``; pass it on every page.

        Raises:
            TypeError: a bad ``limit``, ``cursor`` or ``metadata``.
            ValueError: ``limit`` below 1, or ``cursor`` was not made by this method.
            StoreClosed, StoreError: the store is closed or the database failed.
        """
        limit = check_count(limit, "limit", minimum=1)
        clauses, params = _metadata_where(metadata)
        if cursor is not None:
            updated, row_id = decode_cursor(cursor)
            clauses.insert(0, "(s.updated_at, s.id) < (?, ?)")
            params[:0] = [updated, row_id]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {_INFO_COLUMNS}, s.id FROM {SESSIONS} s {where} "
                "ORDER BY s.updated_at DESC, s.id DESC LIMIT ?",
                [*params, limit + 1],
            ).fetchall()
        )
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1][3], page[-1][5]) if len(rows) > limit else None
        return SessionPage([info_from_row(row[:5]) for row in page], next_cursor)

    def session_info(self, session_id: str) -> SessionInfo | None:
        """Return what the store knows about one session, or ``None`` if it has no record.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreClosed, StoreError: the store is closed or the database failed.
        """
        check_session_id(session_id)
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM {SESSIONS} s WHERE s.session_id = ?",
                (session_id,),
            ).fetchone()
        )
        return None if row is None else info_from_row(row)

    def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace the session's metadata with ``metadata`` (a JSON object).

        Creates the session's record (with no messages) if it has none yet. Changing
        metadata is not activity: ``updated_at`` stays as it was.

        Raises:
            TypeError: ``metadata`` is not a dict of JSON values; nothing is changed.
            ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        text = dump_metadata(metadata)
        self._write(lambda conn: self._put_metadata(conn, session_id, text))

    def update_metadata(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        remove: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Merge ``changes`` into the session's metadata (top-level keys); return the result.

        Read, merge and write happen in one transaction, so concurrent updates of
        different keys never lose each other. Creates the session's record (with no
        messages) if it has none yet; ``updated_at`` does not change.

        Args:
            session_id: the session.
            changes: keys to set (a value ``None`` stores JSON null; it does not delete).
            remove: keys to delete (missing keys are ignored).

        Raises:
            TypeError: ``changes`` is not a dict of JSON values, or a key in ``remove``
                is not a str; nothing is changed.
            ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        dump_metadata(changes, "changes")
        if isinstance(remove, str) or not all(isinstance(key, str) for key in remove):
            raise TypeError(f"remove must be a list of str keys, got {remove!r}")

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute(
                f"SELECT metadata FROM {SESSIONS} WHERE session_id = ?", (session_id,)
            ).fetchone()
            merged = {} if row is None else load_metadata(row[0], session_id)
            merged.update(changes)
            for key in remove:
                merged.pop(key, None)
            self._put_metadata(conn, session_id, dump_metadata(merged))
            return merged

        return self._write(write)

    @staticmethod
    def _put_metadata(conn: sqlite3.Connection, session_id: str, text: str) -> None:
        now = time.time()
        conn.execute(
            f"INSERT INTO {SESSIONS} (session_id, created_at, updated_at, message_count, "
            "last_seq, metadata) VALUES (?, ?, ?, 0, 0, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET metadata = excluded.metadata",
            (session_id, now, now, text),
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
        """Find messages by their words, best match first (SQLite FTS5, bm25 ranking).

        Args:
            query: words that must all appear (in any order, any case). Nothing in it is
                query syntax unless ``raw`` is true, so any text is safe to pass.
            session_id: search this session only; ``None`` searches every session.
            limit: at most this many hits (1 or more).
            raw: pass ``query`` to FTS5 as is (``"exact phrase"``, ``OR``, ``NOT``,
                ``prefix*``, ``NEAR(a b)``).
            highlight: the marks put around matched words in ``snippet``.

        Returns:
            The hits; ``[]`` when ``query`` has no words.

        Raises:
            TypeError: a bad argument type.
            ValueError: a bad ``session_id`` or ``limit``, or (``raw`` only) a query
                FTS5 cannot parse; the message quotes it.
            StoreClosed, StoreError: the store is closed or the database failed.
        """
        limit = check_search(query, session_id, limit, highlight)
        match = query if raw else fts_phrase_query(query)
        if not match.strip():
            return []
        where = "" if session_id is None else "AND s.session_id = ?"
        params: list[Any] = [*highlight, match]
        if session_id is not None:
            params.append(session_id)

        def read(conn: sqlite3.Connection) -> list[tuple[str, int, str, str, float]]:
            try:
                return conn.execute(
                    f"SELECT s.session_id, m.seq, m.message, "
                    f"snippet({MESSAGES_FTS}, 0, ?, ?, '…', 16), bm25({MESSAGES_FTS}) "
                    f"FROM {MESSAGES_FTS} JOIN {MESSAGES} m ON m.id = {MESSAGES_FTS}.rowid "
                    f"JOIN {SESSIONS} s ON s.id = m.session "
                    f"WHERE {MESSAGES_FTS} MATCH ? {where} "
                    f"ORDER BY bm25({MESSAGES_FTS}), m.id LIMIT {limit}",
                    params,
                ).fetchall()
            except sqlite3.OperationalError as exc:
                # With raw syntax, any failure but a busy database is the query's fault.
                if raw and "locked" not in str(exc) and "busy" not in str(exc):
                    raise ValueError(f"bad full-text query {query!r}: {exc}") from None
                raise

        hits: list[SearchHit] = []
        for found_in, seq, text, snippet, rank in self._read(read):
            decoded = decode_messages([(seq, text)], f"session {found_in!r}")
            if decoded:
                hits.append(SearchHit(found_in, seq, decoded[0], snippet, rank))
        return hits

    # -- fork ------------------------------------------------------------------------------

    def fork(self, session_id: str, new_session_id: str, *, at: int | None = None) -> int:
        """Copy the session's history up to position ``at`` into a new session.

        One transaction. The copy keeps each message's ``created_at`` and the source's
        metadata (replacing any the target's record had); the new session is created,
        and last active, now. The source is not changed.

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

        def write(conn: sqlite3.Connection) -> int:
            source = conn.execute(
                f"SELECT id, message_count, metadata FROM {SESSIONS} WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            if source is None:
                raise ValueError(f"no session {session_id!r} to fork")
            source_id, count, metadata = source
            if at is not None and at > count:
                raise ValueError(
                    f"at={at} is past the end of session {session_id!r} ({count} messages)"
                )
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
            return copied

        return self._write(write)
