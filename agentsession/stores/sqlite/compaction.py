"""Compaction for ``SQLiteStore``: archived messages in ``ARCHIVED``, records in ``COMPACTIONS``.

Functions of a connection, run by the store in one write transaction (``compact``,
``uncompact``) or one read transaction (``archive``); see ``StoreBase``'s hooks of the
same names for what each promises.
"""

from __future__ import annotations

import sqlite3
import time

from ..base import Row
from .base import session_key
from .schema import ARCHIVED, COMPACTIONS, MESSAGES, SESSIONS

__all__ = ("archive", "compact", "delete_session_key", "insert", "records", "uncompact")


def _shift(conn: sqlite3.Connection, session: int, first: int, by: int) -> None:
    """Add ``by`` to the seq of the session's messages from ``first`` on: negated first,
    so that no step collides with the unique (session, seq) index."""
    conn.execute(
        f"UPDATE {MESSAGES} SET seq = -(seq + ?) WHERE session = ? AND seq >= ?",
        (by, session, first),
    )
    conn.execute(f"UPDATE {MESSAGES} SET seq = -seq WHERE session = ? AND seq < 0", (session,))


def compact(conn: sqlite3.Connection, session_id: str, cut: int, summary: str, record: str) -> None:
    session = session_key(conn, session_id)
    if session is None:
        raise ValueError(f"no session {session_id!r} to compact")
    (count,) = conn.execute(
        f"SELECT message_count FROM {SESSIONS} WHERE id = ?", (session,)
    ).fetchone()
    if count <= cut:  # a message popped since the cut was chosen: keep one after it
        raise ValueError(f"session {session_id!r} holds no more than {cut} messages")
    (compaction,) = conn.execute(
        f"INSERT INTO {COMPACTIONS} (session, record, summary) VALUES (?, ?, ?) RETURNING id",
        (session, record, summary),
    ).fetchone()
    conn.execute(
        f"INSERT INTO {ARCHIVED} (compaction, seq, created_at, message) "
        f"SELECT ?, seq, created_at, message FROM {MESSAGES} WHERE session = ? AND seq <= ? "
        "ORDER BY seq",
        (compaction, session, cut),
    )
    conn.execute(f"DELETE FROM {MESSAGES} WHERE session = ? AND seq <= ?", (session, cut))
    _shift(conn, session, cut + 1, 1 - cut)
    conn.execute(
        f"INSERT INTO {MESSAGES} (session, seq, created_at, message) VALUES (?, 1, ?, ?)",
        (session, time.time(), summary),
    )
    conn.execute(
        f"UPDATE {SESSIONS} SET message_count = message_count - ?, last_seq = last_seq - ? "
        "WHERE id = ?",
        (cut - 1, cut - 1, session),
    )


def uncompact(conn: sqlite3.Connection, session_id: str) -> tuple[str, Row] | None:
    session = session_key(conn, session_id)
    if session is None:
        return None
    newest = conn.execute(
        f"SELECT id, record, summary FROM {COMPACTIONS} WHERE session = ? ORDER BY id DESC LIMIT 1",
        (session,),
    ).fetchone()
    if newest is None:
        return None
    compaction, record, summary = newest
    first = conn.execute(
        f"SELECT message FROM {MESSAGES} WHERE session = ? AND seq = 1", (session,)
    ).fetchone()
    dropped = int(first is not None and first[0] == summary)
    if dropped:
        conn.execute(f"DELETE FROM {MESSAGES} WHERE session = ? AND seq = 1", (session,))
    (archived,) = conn.execute(
        f"SELECT count(*) FROM {ARCHIVED} WHERE compaction = ?", (compaction,)
    ).fetchone()
    shift = archived - dropped
    if shift:
        _shift(conn, session, 1, shift)
    conn.execute(
        f"INSERT INTO {MESSAGES} (session, seq, created_at, message) "
        f"SELECT ?, row_number() OVER (ORDER BY seq), created_at, message FROM {ARCHIVED} "
        "WHERE compaction = ? ORDER BY seq",
        (session, compaction),
    )
    conn.execute(f"DELETE FROM {ARCHIVED} WHERE compaction = ?", (compaction,))
    conn.execute(f"DELETE FROM {COMPACTIONS} WHERE id = ?", (compaction,))
    conn.execute(
        f"UPDATE {SESSIONS} SET message_count = message_count + ?, last_seq = last_seq + ? "
        "WHERE id = ?",
        (shift, shift, session),
    )
    return record, (1, summary)


def archive(
    conn: sqlite3.Connection, session_id: str
) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
    """The session's messages and archive (in the caller's read transaction)."""
    session = session_key(conn, session_id)
    if session is None:
        return [], []
    live: list[Row] = conn.execute(
        f"SELECT seq, message FROM {MESSAGES} WHERE session = ? ORDER BY seq", (session,)
    ).fetchall()
    entries = []
    for compaction, record, summary in conn.execute(
        f"SELECT id, record, summary FROM {COMPACTIONS} WHERE session = ? ORDER BY id",
        (session,),
    ).fetchall():
        rows: list[Row] = conn.execute(
            f"SELECT created_at, message FROM {ARCHIVED} WHERE compaction = ? ORDER BY seq",
            (compaction,),
        ).fetchall()
        entries.append((record, (1, summary), rows))
    return live, entries


def records(conn: sqlite3.Connection, session_id: str) -> list[tuple[str, Row]]:
    return [
        (record, (1, summary))
        for record, summary in conn.execute(
            f"SELECT c.record, c.summary FROM {COMPACTIONS} c JOIN {SESSIONS} s "
            "ON c.session = s.id WHERE s.session_id = ? ORDER BY c.id",
            (session_id,),
        )
    ]


def delete_session_key(conn: sqlite3.Connection, session: int) -> None:
    """Delete the archive of the session whose sessions row is ``session``."""
    conn.execute(
        f"DELETE FROM {ARCHIVED} WHERE compaction IN "
        f"(SELECT id FROM {COMPACTIONS} WHERE session = ?)",
        (session,),
    )
    conn.execute(f"DELETE FROM {COMPACTIONS} WHERE session = ?", (session,))


def insert(
    conn: sqlite3.Connection,
    session: int,
    entries: list[tuple[str, str, list[tuple[float, str]]]],
) -> None:
    """Store imported compactions, oldest first (in the caller's write transaction)."""
    for record, summary, archived in entries:
        (compaction,) = conn.execute(
            f"INSERT INTO {COMPACTIONS} (session, record, summary) VALUES (?, ?, ?) RETURNING id",
            (session, record, summary),
        ).fetchone()
        conn.executemany(
            f"INSERT INTO {ARCHIVED} (compaction, seq, created_at, message) VALUES (?, ?, ?, ?)",
            [(compaction, seq, created, text) for seq, (created, text) in enumerate(archived, 1)],
        )
