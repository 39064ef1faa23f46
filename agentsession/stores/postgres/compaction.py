"""Compaction for ``PostgresStore``: archived messages in ``{schema}.agentsession_archived``,
records in ``{schema}.agentsession_compactions``.

Functions of a connection, run by the store in one transaction each; see ``StoreBase``'s
hooks of the same names for what each promises. The writers lock the session's row
first (``FOR UPDATE``), as every other change of a session's messages does.
"""

from __future__ import annotations

import json

from ..._serialize import message_text
from ..base import Row
from .base import NOW, Conn, searchable
from .schema import Tables

__all__ = ("archive", "compact", "delete_sessions", "insert", "records", "uncompact")


def _locked(conn: Conn, t: Tables, key: str) -> int | None:
    row = conn.execute(
        f"SELECT id FROM {t.sessions} WHERE session_id = %s FOR UPDATE", (key,)
    ).fetchone()
    return None if row is None else int(row[0])


def _shift(conn: Conn, t: Tables, session: int, first: int, by: int) -> None:
    """Add ``by`` to the seq of the session's messages from ``first`` on: negated first,
    so that no row collides with another on the (session, seq) primary key."""
    conn.execute(
        f"UPDATE {t.messages} SET seq = -(seq + %s) WHERE session = %s AND seq >= %s",
        (by, session, first),
    )
    conn.execute(f"UPDATE {t.messages} SET seq = -seq WHERE session = %s AND seq < 0", (session,))


def compact(
    conn: Conn, t: Tables, key: str, cut: int, summary: str, words: str, record: str
) -> None:
    session = _locked(conn, t, key)
    if session is None:
        raise ValueError(f"no session {key!r} to compact")
    counted = conn.execute(
        f"SELECT message_count FROM {t.sessions} WHERE id = %s", (session,)
    ).fetchone()
    if counted is None or counted[0] <= cut:  # a message popped since the cut was chosen
        raise ValueError(f"session {key!r} holds no more than {cut} messages")
    row = conn.execute(
        f"INSERT INTO {t.compactions} (session, record, summary) VALUES (%s, %s, %s) RETURNING id",
        (session, record, summary),
    ).fetchone()
    assert row is not None
    conn.execute(
        f"WITH d AS (DELETE FROM {t.messages} WHERE session = %(s)s AND seq <= %(cut)s "
        "RETURNING seq, created_at, message, search_text) "
        f"INSERT INTO {t.archived} (compaction, seq, created_at, message, search_text) "
        "SELECT %(c)s, seq, created_at, message, search_text FROM d",
        {"s": session, "cut": cut, "c": row[0]},
    )
    _shift(conn, t, session, cut + 1, 1 - cut)
    conn.execute(
        f"INSERT INTO {t.messages} (session, seq, created_at, message, search_text) "
        f"VALUES (%s, 1, {NOW}, %s, %s)",
        (session, summary, words),
    )
    conn.execute(
        f"UPDATE {t.sessions} SET message_count = message_count - %(d)s, "
        "last_seq = last_seq - %(d)s WHERE id = %(s)s",
        {"d": cut - 1, "s": session},
    )


def uncompact(conn: Conn, t: Tables, key: str) -> tuple[str, Row] | None:
    session = _locked(conn, t, key)
    if session is None:
        return None
    newest = conn.execute(
        f"SELECT id, record, summary FROM {t.compactions} WHERE session = %s "
        "ORDER BY id DESC LIMIT 1",
        (session,),
    ).fetchone()
    if newest is None:
        return None
    compaction, record, summary = newest
    first = conn.execute(
        f"SELECT message FROM {t.messages} WHERE session = %s AND seq = 1", (session,)
    ).fetchone()
    dropped = int(first is not None and first[0] == summary)
    if dropped:
        conn.execute(f"DELETE FROM {t.messages} WHERE session = %s AND seq = 1", (session,))
    counted = conn.execute(
        f"SELECT count(*) FROM {t.archived} WHERE compaction = %s", (compaction,)
    ).fetchone()
    assert counted is not None
    shift = int(counted[0]) - dropped
    if shift:
        _shift(conn, t, session, 1, shift)
    conn.execute(
        f"WITH d AS (DELETE FROM {t.archived} WHERE compaction = %(c)s "
        "RETURNING seq, created_at, message, search_text) "
        f"INSERT INTO {t.messages} (session, seq, created_at, message, search_text) "
        "SELECT %(s)s, row_number() OVER (ORDER BY seq), created_at, message, search_text "
        "FROM d",
        {"c": compaction, "s": session},
    )
    conn.execute(f"DELETE FROM {t.compactions} WHERE id = %s", (compaction,))
    conn.execute(
        f"UPDATE {t.sessions} SET message_count = message_count + %(d)s, "
        "last_seq = last_seq + %(d)s WHERE id = %(s)s",
        {"d": shift, "s": session},
    )
    return str(record), (1, str(summary))


def archive(conn: Conn, t: Tables, key: str) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
    """The session's messages and archive (in the caller's repeatable-read transaction)."""
    row = conn.execute(f"SELECT id FROM {t.sessions} WHERE session_id = %s", (key,)).fetchone()
    if row is None:
        return [], []
    session = row[0]
    live: list[Row] = conn.execute(
        f"SELECT seq, message FROM {t.messages} WHERE session = %s ORDER BY seq", (session,)
    ).fetchall()
    entries = []
    for compaction, record, summary in conn.execute(
        f"SELECT id, record, summary FROM {t.compactions} WHERE session = %s ORDER BY id",
        (session,),
    ).fetchall():
        rows: list[Row] = conn.execute(
            f"SELECT created_at, message FROM {t.archived} WHERE compaction = %s ORDER BY seq",
            (compaction,),
        ).fetchall()
        entries.append((str(record), (1, str(summary)), rows))
    return live, entries


def records(conn: Conn, t: Tables, key: str) -> list[tuple[str, Row]]:
    return [
        (str(record), (1, str(summary)))
        for record, summary in conn.execute(
            f"SELECT c.record, c.summary FROM {t.compactions} c JOIN {t.sessions} s "
            "ON c.session = s.id WHERE s.session_id = %s ORDER BY c.id",
            (key,),
        ).fetchall()
    ]


def delete_sessions(conn: Conn, t: Tables, sessions: list[int]) -> None:
    """Delete the archives of the sessions whose sessions rows are ``sessions``."""
    conn.execute(
        f"WITH c AS (DELETE FROM {t.compactions} WHERE session = ANY(%s) RETURNING id) "
        f"DELETE FROM {t.archived} WHERE compaction IN (SELECT id FROM c)",
        (sessions,),
    )


def _words(text: str) -> str:
    """The search words of a stored message ('' for ciphertext or damage)."""
    try:
        return searchable(message_text(json.loads(text)))
    except (TypeError, ValueError):
        return ""


def insert(
    conn: Conn, t: Tables, session: int, entries: list[tuple[str, str, list[tuple[float, str]]]]
) -> None:
    """Store imported compactions, oldest first (in the caller's transaction)."""
    for record, summary, archived in entries:
        row = conn.execute(
            f"INSERT INTO {t.compactions} (session, record, summary) VALUES (%s, %s, %s) "
            "RETURNING id",
            (session, record, summary),
        ).fetchone()
        assert row is not None
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {t.archived} (compaction, seq, created_at, message, search_text) "
                "VALUES (%s, %s, %s, %s, %s)",
                [
                    (row[0], seq, created, text, _words(text))
                    for seq, (created, text) in enumerate(archived, 1)
                ],
            )
