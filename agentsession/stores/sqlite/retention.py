"""Retention for ``SQLiteStore``: prune old sessions and long histories, in small steps.

Every write transaction deletes at most ``batch`` messages, so a prune of millions of
rows never holds the write lock for long: other writers get their turn between batches.
Sessions that a run holds the lease of (see ``try_lock``) are left alone.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from ..base import (
    NOT_LEASED,
    Progress,
    StoreCore,
    check_count,
    check_ttl,
    plan_idle_batch,
    plan_trim_batch,
    prune_cutoff,
)
from .schema import MESSAGES, SESSIONS

__all__ = ("RetentionMixin",)


class RetentionMixin(StoreCore):
    """``prune``, ``expire_idle``, ``checkpoint`` and ``vacuum``."""

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

        Work is done in write transactions of at most ``batch`` deleted messages each,
        looping until nothing is left to do. Trimming renumbers a session's kept messages
        1..``keep_last`` in the same transaction (positions stay dense), so a
        transaction also rewrites the kept messages of the sessions it trims. Neither
        mode counts as activity: ``updated_at`` is not changed. A session deleted whole
        loses its newest messages first, so between batches it is a shorter but intact
        history. Sessions whose run lease is held are skipped.

        Args:
            older_than: delete sessions last active before this time (an aware
                ``datetime``) or longer ago than this (a ``timedelta``).
            keep_last: trim every session to its newest ``keep_last`` messages (0 or
                more); applied after ``older_than``.
            batch: at most this many messages deleted per write transaction.
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
        if dry_run:
            return self._read(lambda conn: _count(conn, cutoff, keep_last))
        removed = 0
        if cutoff is not None:
            removed += self._loop(lambda conn: _delete_idle(conn, cutoff, batch)[0], progress)
        if keep_last is not None:
            removed += self._loop(lambda conn: _trim(conn, keep_last, batch), progress)
        if removed:
            self.checkpoint()
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
        cutoff = time.time() - ttl.total_seconds()
        sessions = 0
        while True:
            removed, gone, more = self._write(lambda conn: _delete_idle(conn, cutoff, batch))
            sessions += gone
            if not more:
                break
        if sessions:
            self.checkpoint()
        return sessions

    def _loop(self, step: Any, progress: Progress | None) -> int:
        total = 0
        while True:
            removed = self._write(step)
            if removed is None:
                return total
            total += removed
            if progress is not None and removed:
                progress(removed)

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy the write-ahead log into the database file (file databases only).

        ``"PASSIVE"`` never waits; ``"TRUNCATE"`` waits for readers (up to the busy
        timeout) and then empties the ``-wal`` file, giving its space back.

        Raises:
            ValueError: an unknown ``mode``.
            StoreClosed, StoreError: the store is closed or the database failed.
        """
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"mode must be PASSIVE, FULL, RESTART or TRUNCATE, got {mode!r}")
        if self.path is not None:
            self._read(lambda conn: conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall())

    def vacuum(self) -> None:
        """Give the space freed by deletions back to the file system.

        Runs ``PRAGMA incremental_vacuum`` if the database was created with
        ``auto_vacuum=INCREMENTAL``, else ``VACUUM`` (which rewrites the whole file and
        needs as much free disk again while it runs), then a ``TRUNCATE`` checkpoint.
        Other writers wait meanwhile. A no-op for ``":memory:"``.

        Raises:
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        if self.path is None:
            return

        def work(conn: sqlite3.Connection) -> None:
            (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
            if mode == 2:
                conn.execute("PRAGMA incremental_vacuum").fetchall()
            else:
                conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        with self._writers_waiting():
            self._read(work)

    @contextlib.contextmanager
    def _writers_waiting(self) -> Iterator[None]:
        """Hold this process's writer lock, as ``_write`` does, without a transaction."""
        from .store import _file_lock  # a cycle at import time: sqlite.py imports us

        if self.path is None:
            yield
            return
        lock = _file_lock(self.path)
        with lock:
            yield


def _count(conn: sqlite3.Connection, cutoff: float | None, keep_last: int | None) -> int:
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


def _delete_idle(
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


def _trim(conn: sqlite3.Connection, keep_last: int, batch: int) -> int | None:
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
