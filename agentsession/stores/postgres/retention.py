"""Retention for ``PostgresStore``: prune old sessions and long histories, in small steps.

Every transaction deletes at most ``batch`` messages, so a prune of millions of rows
never holds locks for long. Each batch locks the sessions it works on with ``FOR UPDATE
SKIP LOCKED``: a session an add is writing right now is skipped (and found again by the
next batch once it is free), so pruning never waits for writers and never deadlocks
with them, and several app servers may prune or expire at once. Sessions whose run
lease is held (see ``try_lock``) are left alone. Idle times are measured by the server's
clock, the one every ``updated_at`` was written with.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..base import (
    Progress,
    check_count,
    check_ttl,
    plan_idle_batch,
    plan_trim_batch,
    prune_cutoff,
)
from .base import MAX_ROWS, Conn, PostgresCore, not_leased
from .schema import Tables

__all__ = ("PostgresRetentionMixin",)


class PostgresRetentionMixin(PostgresCore):
    """``prune``, ``expire_idle`` and ``vacuum``."""

    def prune(
        self,
        *,
        older_than: datetime | timedelta | None = None,
        keep_last: int | None = None,
        batch: int = 500,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> int:
        """Delete idle sessions whole and/or trim every session to its newest messages.

        Work is done in transactions of at most ``batch`` deleted messages each, looping
        until nothing is left to do. Trimming renumbers a session's kept messages
        1..``keep_last`` in the same transaction, so positions stay dense. Neither mode
        is activity: ``updated_at`` does not change. A session deleted whole loses its
        newest messages first, so between batches it is a shorter but intact history.
        Sessions whose run lease is held, or that a writer holds right now, are skipped.

        Args:
            older_than: delete sessions last active before this time (an aware
                ``datetime``) or longer ago than this (a ``timedelta``, measured by the
                server's clock).
            keep_last: trim every session to its newest ``keep_last`` messages (0 or
                more); applied after ``older_than``.
            batch: at most this many messages deleted per transaction.
            dry_run: count what would be deleted; change nothing.
            progress: called with the number of messages deleted after each batch.

        Returns:
            How many messages were deleted (or would be, with ``dry_run``).

        Raises:
            TypeError: a bad argument type.
            ValueError: neither ``older_than`` nor ``keep_last`` given, a negative
                value, a naive ``datetime``, or ``batch`` below 1.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``; batches
                already committed stay deleted.
        """
        cutoff = prune_cutoff(older_than, keep_last, batch)
        if isinstance(older_than, timedelta):
            cutoff = self._server_time() - older_than.total_seconds()
        t = self._tables
        if dry_run:
            return self._read(lambda conn: _count(conn, t, cutoff, keep_last))
        removed = 0
        if cutoff is not None:
            idle = cutoff
            removed += self._batches(lambda conn: _delete_idle(conn, t, idle, batch)[0], progress)
        if keep_last is not None:
            removed += self._batches(lambda conn: _trim(conn, t, keep_last, batch), progress)
        return removed

    def expire_idle(self, ttl: timedelta, batch: int = 500) -> int:
        """Delete every session idle for longer than ``ttl``; return how many sessions.

        The same work as ``prune(older_than=ttl)``, counted in sessions: this is what a
        store-wide time-to-live calls.

        Raises:
            TypeError: ``ttl`` is not a ``timedelta`` or ``batch`` not an int.
            ValueError: ``ttl`` is not positive, or ``batch`` below 1.
            StoreBusy, StoreClosed, StoreError: as for ``prune``.
        """
        check_ttl(ttl)
        check_count(batch, "batch", minimum=1)
        cutoff = self._server_time() - ttl.total_seconds()
        t = self._tables
        sessions = 0
        while True:
            removed, gone = self._write(lambda conn: _delete_idle(conn, t, cutoff, batch))
            sessions += gone
            if removed is None:
                return sessions

    def _batches(self, step: Callable[[Conn], int | None], progress: Progress | None) -> int:
        """Run ``step`` in one transaction after another until it returns ``None``."""
        total = 0
        while (removed := self._write(step)) is not None:
            total += removed
            if progress is not None and removed:
                progress(removed)
        return total

    def vacuum(self) -> None:
        """Let PostgreSQL reuse the space freed by deletions, and refresh statistics.

        Runs ``VACUUM (ANALYZE)`` on agentsession's tables, outside any transaction.
        Readers and writers go on meanwhile (it takes no lock they need). The space is
        kept by the tables for their next rows rather than given back to the file
        system (only ``VACUUM FULL`` does that, locking the tables out while it runs).
        A role that does not own the tables gets PostgreSQL's warning and nothing done.

        Raises:
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        t = self._tables

        def work(conn: Conn) -> None:
            autocommit = conn.autocommit
            conn.autocommit = True
            try:
                conn.execute(f"VACUUM (ANALYZE) {t.sessions}, {t.messages}, {t.locks}")
            finally:
                conn.autocommit = autocommit

        self._run(work)


def _count(conn: Conn, t: Tables, cutoff: float | None, keep_last: int | None) -> int:
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


def _delete_idle(conn: Conn, t: Tables, cutoff: float, batch: int) -> tuple[int | None, int]:
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
        f"WITH m AS (DELETE FROM {t.messages} WHERE session = ANY(%(whole)s)) "
        f"DELETE FROM {t.sessions} WHERE id = ANY(%(whole)s)",
        {"whole": whole},
    )
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


def _trim(conn: Conn, t: Tables, keep_last: int, batch: int) -> int | None:
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
