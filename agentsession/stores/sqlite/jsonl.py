"""JSON Lines export and import for ``SQLiteStore``: the storage work of its JSONL hooks.

The format and the checks are in ``stores.jsonl``; here, as functions of a connection,
each session is read in one read transaction (a consistent snapshot; writers are not
blocked) and stored in one write transaction.
"""

from __future__ import annotations

import sqlite3
from typing import IO

from ..base import load_metadata
from ..jsonl import ImportedSession, header_line, message_lines
from . import compaction, ledger
from .schema import MESSAGES, SESSIONS

__all__ = ("PAGE", "export_one", "id_page", "missing", "store_session")

#: Sessions (and messages) read at a time.
PAGE = 500


def missing(conn: sqlite3.Connection, session_ids: list[str]) -> list[str]:
    """Those of ``session_ids`` that have no record."""
    return [
        session_id
        for session_id in session_ids
        if conn.execute(f"SELECT 1 FROM {SESSIONS} WHERE session_id = ?", (session_id,)).fetchone()
        is None
    ]


def id_page(conn: sqlite3.Connection, after: int) -> list[tuple[int, str]]:
    """``(row id, session_id)`` of the sessions after row id ``after``, in order."""
    return conn.execute(
        f"SELECT id, session_id FROM {SESSIONS} WHERE id > ? ORDER BY id LIMIT ?",
        (after, PAGE),
    ).fetchall()


def export_one(conn: sqlite3.Connection, session_id: str, fp: IO[str]) -> bool:
    """Write one session from one read transaction; ``False`` if it is gone."""
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
        while rows := cursor.fetchmany(PAGE):
            fp.write(message_lines(rows))
        return True
    finally:
        conn.execute("COMMIT")


def store_session(conn: sqlite3.Connection, session: ImportedSession, on_conflict: str) -> bool:
    """Store one imported session (in the caller's write transaction)."""
    row = conn.execute(
        f"SELECT id FROM {SESSIONS} WHERE session_id = ?", (session.session_id,)
    ).fetchone()
    if row is not None:
        if on_conflict == "skip":
            return False
        if on_conflict == "error":
            raise session.conflict()
        compaction.delete_session_key(conn, row[0])
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
    compaction.insert(conn, new_id, session.compactions)
    ledger.delete(conn, session.session_id)
    ledger.insert(conn, session.runs)
    return True
