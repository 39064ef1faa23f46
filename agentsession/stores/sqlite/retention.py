"""Retention for ``SQLiteStore``: prune old sessions and long histories, in small steps.

The storage work of ``SQLiteStore``'s retention hooks, as functions of a connection.
Every write transaction (one call of ``delete_idle`` or ``trim``) deletes at most
``batch`` messages, so a prune of millions of rows never holds the write lock for long:
other writers get their turn between batches. Sessions that a run holds the lease of
(see ``try_lock``) are left alone.
"""

from __future__ import annotations

import sqlite3
import time

from ..base import plan_idle_batch, plan_trim_batch
from . import compaction, ledger
from .lease import NOT_LEASED
from .schema import MESSAGES, SESSIONS

__all__ = ("count", "delete_idle", "trim", "vacuum")


def vacuum(conn: sqlite3.Connection) -> None:
    """Incremental vacuum (or a full ``VACUUM``), then a ``TRUNCATE`` checkpoint."""
    (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    if mode == 2:
        conn.execute("PRAGMA incremental_vacuum").fetchall()
    else:
        conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def count(conn: sqlite3.Connection, cutoff: float | None, keep_last: int | None) -> int:
    """How many messages a prune would delete."""
    now = time.time()
    total = 0
    if cutoff is not None:
        (idle,) = conn.execute(
            f"SELECT coalesce(sum(message_count), 0) FROM {SESSIONS} s "
            f"WHERE s.updated_at < ? AND {NOT_LEASED}",
            (cutoff, now),
        ).fetchone()
        total += idle
    if keep_last is not None:
        alive = "" if cutoff is None else "AND s.updated_at >= ?"
        (excess,) = conn.execute(
            f"SELECT coalesce(sum(message_count - ?), 0) FROM {SESSIONS} s "
            f"WHERE s.message_count > ? AND {NOT_LEASED} {alive}",
            (keep_last, keep_last, now) if cutoff is None else (keep_last, keep_last, now, cutoff),
        ).fetchone()
        total += excess
    return int(total)


def delete_idle(
    conn: sqlite3.Connection, cutoff: float, batch: int
) -> tuple[int | None, int, bool]:
    """One batch: (messages deleted or None when done, sessions deleted, more to do)."""
    rows = conn.execute(
        f"SELECT s.id, s.message_count FROM {SESSIONS} s WHERE s.updated_at < ? AND "
        f"{NOT_LEASED} ORDER BY s.updated_at, s.id LIMIT ?",
        (cutoff, time.time(), batch),
    ).fetchall()
    if not rows:
        return None, 0, False
    whole, partial = plan_idle_batch(rows, batch)
    counts = dict(rows)
    removed = 0
    for session in whole:
        ledger.delete_session_key(conn, session)
        compaction.delete_session_key(conn, session)
        conn.execute(f"DELETE FROM {MESSAGES} WHERE session = ?", (session,))
        conn.execute(f"DELETE FROM {SESSIONS} WHERE id = ?", (session,))
        removed += counts[session]
    if partial is not None:
        session, newest = partial
        conn.execute(
            f"DELETE FROM {MESSAGES} WHERE id IN (SELECT id FROM {MESSAGES} "
            "WHERE session = ? ORDER BY seq DESC LIMIT ?)",
            (session, newest),
        )
        conn.execute(
            f"UPDATE {SESSIONS} SET message_count = message_count - ?, last_seq = "
            f"coalesce((SELECT max(seq) FROM {MESSAGES} WHERE session = ?), 0) WHERE id = ?",
            (newest, session, session),
        )
        removed += newest
    return removed, len(whole), True


def trim(conn: sqlite3.Connection, keep_last: int, batch: int) -> int | None:
    """One batch of ``keep_last`` trimming: messages deleted, or None when done."""
    rows = conn.execute(
        f"SELECT s.id, s.message_count FROM {SESSIONS} s WHERE s.message_count > ? AND "
        f"{NOT_LEASED} ORDER BY s.id LIMIT ?",
        (keep_last, time.time(), batch),
    ).fetchall()
    if not rows:
        return None
    removed = 0
    for session, cut in plan_trim_batch(rows, keep_last, batch):
        conn.execute(
            f"DELETE FROM {MESSAGES} WHERE id IN (SELECT id FROM {MESSAGES} "
            "WHERE session = ? ORDER BY seq LIMIT ?)",
            (session, cut),
        )
        # Renumber what is left 1..n: negate first, so no step collides with the unique
        # (session, seq) index, then number in order.
        conn.execute(f"UPDATE {MESSAGES} SET seq = -seq WHERE session = ?", (session,))
        conn.execute(
            f"UPDATE {MESSAGES} SET seq = r.n FROM (SELECT id, row_number() OVER "
            f"(ORDER BY seq DESC) AS n FROM {MESSAGES} WHERE session = ?) AS r "
            f"WHERE {MESSAGES}.id = r.id",
            (session,),
        )
        conn.execute(
            f"UPDATE {SESSIONS} SET message_count = message_count - ?, "
            "last_seq = message_count - ? WHERE id = ?",
            (cut, cut, session),
        )
        removed += cut
    return removed
