"""Retention for ``PostgresStore``: prune old sessions and long histories, in small steps.

The storage work of ``PostgresStore``'s retention hooks, as functions of a pooled
connection. Every transaction deletes at most ``batch`` messages, so a prune of millions of rows
never holds locks for long. Each batch locks the sessions it works on with ``FOR UPDATE
SKIP LOCKED``: a session an add is writing right now is skipped (and found again by the
next batch once it is free), so pruning never waits for writers and never deadlocks
with them, and several app servers may prune or expire at once. Sessions whose run
lease is held (see ``try_lock``) are left alone. Idle times are measured by the server's
clock, the one every ``updated_at`` was written with.
"""

from __future__ import annotations

from typing import Any

from ..base import plan_idle_batch, plan_trim_batch
from . import compaction
from .base import MAX_ROWS, Conn, not_leased
from .schema import Tables

__all__ = ("count", "delete_idle", "trim", "vacuum")


def vacuum(conn: Conn, t: Tables) -> None:
    """``VACUUM (ANALYZE)`` of agentsession's tables, outside any transaction."""
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute(f"VACUUM (ANALYZE) {t.sessions}, {t.messages}, {t.locks}")
    finally:
        conn.autocommit = autocommit


def count(conn: Conn, t: Tables, cutoff: float | None, keep_last: int | None) -> int:
    """How many messages a prune would delete."""
    total = 0
    if cutoff is not None:
        row = conn.execute(
            f"SELECT coalesce(sum(message_count), 0) FROM {t.sessions} s "
            f"WHERE s.updated_at < %s AND {not_leased(t)}",
            (cutoff,),
        ).fetchone()
        total += row[0] if row else 0
    if keep_last is not None:
        alive = "" if cutoff is None else "AND s.updated_at >= %(cutoff)s"
        row = conn.execute(
            f"SELECT coalesce(sum(message_count - %(keep)s), 0) FROM {t.sessions} s "
            f"WHERE s.message_count > %(keep)s AND {not_leased(t)} {alive}",
            {"keep": keep_last, "cutoff": cutoff},
        ).fetchone()
        total += row[0] if row else 0
    return int(total)


def delete_idle(conn: Conn, t: Tables, cutoff: float, batch: int) -> tuple[int | None, int]:
    """One batch: (messages deleted, or None when nothing is left; sessions deleted)."""
    rows = conn.execute(
        f"SELECT s.id, s.message_count FROM {t.sessions} s WHERE s.updated_at < %s "
        f"AND {not_leased(t)} ORDER BY s.updated_at, s.id LIMIT %s FOR UPDATE SKIP LOCKED",
        (cutoff, min(batch, MAX_ROWS)),
    ).fetchall()
    if not rows:
        return None, 0
    whole, partial = plan_idle_batch(rows, batch)
    counts = dict(rows)
    conn.execute(
        f"WITH m AS (DELETE FROM {t.messages} WHERE session = ANY(%(whole)s)), "
        f"s AS (DELETE FROM {t.sessions} WHERE id = ANY(%(whole)s) RETURNING session_id) "
        f"DELETE FROM {t.runs} WHERE session_id IN (SELECT session_id FROM s)",
        {"whole": whole},
    )
    compaction.delete_sessions(conn, t, whole)
    removed = sum(counts[session] for session in whole)
    if partial is not None:
        session, newest = partial
        conn.execute(
            f"WITH m AS (DELETE FROM {t.messages} WHERE session = %(id)s AND seq > %(keep)s) "
            f"UPDATE {t.sessions} SET message_count = %(keep)s, last_seq = %(keep)s "
            "WHERE id = %(id)s",
            {"id": session, "keep": counts[session] - newest},
        )
        removed += newest
    return removed, len(whole)


def trim(conn: Conn, t: Tables, keep_last: int, batch: int) -> int | None:
    """One batch of ``keep_last`` trimming: messages deleted, or None when done."""
    rows = conn.execute(
        f"SELECT s.id, s.message_count FROM {t.sessions} s WHERE s.message_count > %s "
        f"AND {not_leased(t)} ORDER BY s.id LIMIT %s FOR UPDATE SKIP LOCKED",
        (keep_last, min(batch, MAX_ROWS)),
    ).fetchall()
    if not rows:
        return None
    plan = plan_trim_batch(rows, keep_last, batch)
    sessions = [session for session, _ in plan]
    cuts = [cut for _, cut in plan]
    params: dict[str, Any] = {"sessions": sessions, "cuts": cuts}
    cut_of = "unnest(%(sessions)s::bigint[], %(cuts)s::integer[]) AS c(session, cut)"
    conn.execute(
        f"DELETE FROM {t.messages} m USING {cut_of} WHERE m.session = c.session AND m.seq <= c.cut",
        params,
    )
    # Renumber what is left 1..n: through negative numbers first, so that no row takes
    # a position another row still holds (the (session, seq) key is checked per row).
    conn.execute(
        f"UPDATE {t.messages} m SET seq = c.cut - m.seq FROM {cut_of} WHERE m.session = c.session",
        params,
    )
    conn.execute(
        f"UPDATE {t.messages} SET seq = -seq WHERE session = ANY(%(sessions)s) AND seq < 0",
        params,
    )
    conn.execute(
        f"UPDATE {t.sessions} s SET message_count = s.message_count - c.cut, "
        f"last_seq = s.last_seq - c.cut FROM {cut_of} WHERE s.id = c.session",
        params,
    )
    return sum(cuts)
