"""JSON Lines export and import for ``SQLiteStore``: the engine hooks of ``JsonlMixin``.

The format and the checks are in ``_jsonl``; here each session is read in one read
transaction (a consistent snapshot; writers are not blocked) and stored in one write
transaction.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from typing import IO

from ..base import StoreCore, load_metadata
from ..jsonl import ImportedSession, JsonlMixin, header_line, message_lines
from .schema import MESSAGES, SESSIONS

__all__ = ("SQLiteJsonlMixin",)

_PAGE = 500


class SQLiteJsonlMixin(JsonlMixin, StoreCore):
    """``export_jsonl`` and ``import_jsonl`` for SQLite."""

    def _jsonl_session_ids(self) -> Iterator[str]:
        after = 0
        while True:
            rows = self._read(functools.partial(_id_page, after=after))
            for _, session_id in rows:
                yield session_id
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def _jsonl_missing(self, session_ids: list[str]) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [
                session_id
                for session_id in session_ids
                if conn.execute(
                    f"SELECT 1 FROM {SESSIONS} WHERE session_id = ?", (session_id,)
                ).fetchone()
                is None
            ]

        return self._read(read)

    def _jsonl_export_one(self, session_id: str, fp: IO[str]) -> bool:
        return self._read(lambda conn: _export_one(conn, session_id, fp))

    def _jsonl_store(self, session: ImportedSession, on_conflict: str) -> bool:
        return self._write(lambda conn: _store(conn, session, on_conflict))


def _id_page(conn: sqlite3.Connection, after: int) -> list[tuple[int, str]]:
    return conn.execute(
        f"SELECT id, session_id FROM {SESSIONS} WHERE id > ? ORDER BY id LIMIT ?",
        (after, _PAGE),
    ).fetchall()


def _export_one(conn: sqlite3.Connection, session_id: str, fp: IO[str]) -> bool:
    conn.execute("BEGIN")
    try:
        row = conn.execute(
            f"SELECT id, created_at, updated_at, message_count, metadata FROM {SESSIONS} "
            "WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        if row is None:  # deleted since it was listed
            return False
        session, created, updated, count, metadata = row
        fp.write(
            header_line(session_id, created, updated, count, load_metadata(metadata, session_id))
        )
        cursor = conn.execute(
            f"SELECT seq, created_at, message FROM {MESSAGES} WHERE session = ? ORDER BY seq",
            (session,),
        )
        while rows := cursor.fetchmany(_PAGE):
            fp.write(message_lines(rows))
        return True
    finally:
        conn.execute("COMMIT")


def _store(conn: sqlite3.Connection, session: ImportedSession, on_conflict: str) -> bool:
    row = conn.execute(
        f"SELECT id FROM {SESSIONS} WHERE session_id = ?", (session.session_id,)
    ).fetchone()
    if row is not None:
        if on_conflict == "skip":
            return False
        if on_conflict == "error":
            raise session.conflict()
        conn.execute(f"DELETE FROM {MESSAGES} WHERE session = ?", row)
        conn.execute(f"DELETE FROM {SESSIONS} WHERE id = ?", row)
    (new_id,) = conn.execute(
        f"INSERT INTO {SESSIONS} (session_id, created_at, updated_at, message_count, "
        "last_seq, metadata) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (
            session.session_id,
            session.created_at,
            session.updated_at,
            session.message_count,
            session.message_count,
            session.metadata,
        ),
    ).fetchone()
    conn.executemany(
        f"INSERT INTO {MESSAGES} (session, seq, created_at, message, text) VALUES (?, ?, ?, ?, ?)",
        [
            (new_id, seq, created, text, searchable)
            for seq, created, text, searchable in session.rows
        ],
    )
    return True
