"""Retention for ``RedisStore``: prune old sessions and long histories, in small steps.

Every step is one script on one session that deletes at most ``batch`` messages, so a
prune of millions of messages never blocks Redis for long: other clients' commands run
between steps. Sessions that a run holds the lease of (see ``try_lock``) are left
alone; the script checks the lease and, for idle sessions, that the session is still
idle, in the same step as the deletion. Cut-off times are taken from the Redis server's
clock, like every stored time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..base import Progress, check_count, check_ttl, prune_cutoff
from .core import PAGE, RedisCore, chunks

__all__ = ("RedisRetentionMixin",)


class _Meter:
    """Counts deleted messages and reports them to ``progress`` ``batch`` at a time."""

    def __init__(self, batch: int, progress: Progress | None) -> None:
        self.batch = batch
        self.progress = progress
        self.pending = 0
        self.total = 0

    def budget(self) -> int:
        """How many more messages the current batch may delete (at least 1)."""
        return self.batch - self.pending

    def add(self, count: int) -> None:
        self.pending += count
        self.total += count
        if self.pending >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.progress is not None:
            self.progress(self.pending)
        self.pending = 0


class RedisRetentionMixin(RedisCore):
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

        Work is done in atomic steps of at most ``batch`` deleted messages each (one
        script on one session), looping until nothing is left to do. Trimming is one
        ``LTRIM`` per step, so positions stay dense. Neither mode counts as activity:
        ``updated_at`` and the expiry are not changed. A session deleted whole loses
        its newest messages first, so between steps it is a shorter but intact
        history. Sessions whose run lease is held are skipped. Idle sessions are found
        through the sessions index.

        Args:
            older_than: delete sessions last active before this time (an aware
                ``datetime``) or longer ago than this (a ``timedelta``, counted back
                from the Redis server's clock).
            keep_last: trim every session to its newest ``keep_last`` messages (0 or
                more); applied after ``older_than``.
            batch: at most this many messages deleted per step.
            dry_run: count what would be deleted; change nothing.
            progress: called with the number of messages deleted, every ``batch``
                messages and once at the end.

        Returns:
            How many messages were deleted (or would be, with ``dry_run``).

        Raises:
            TypeError: a bad argument type.
            ValueError: neither ``older_than`` nor ``keep_last`` given, a negative
                value, a naive ``datetime``, or ``batch`` below 1.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``; steps already
                done stay done.
        """
        cutoff = prune_cutoff(older_than, keep_last, batch)
        if isinstance(older_than, timedelta):
            cutoff = self._server_time() - older_than.total_seconds()
        if dry_run:
            return self._count(cutoff, keep_last)
        meter = _Meter(batch, progress)
        if cutoff is not None:
            self._drop_idle(cutoff, meter)
        if keep_last is not None:
            self._trim_all(keep_last, meter)
        meter.flush()
        return meter.total

    def expire_idle(self, ttl: timedelta, batch: int = 500) -> int:
        """Delete every session idle for longer than ``ttl``; return how many sessions.

        The same work as ``prune(older_than=ttl)``, counted in sessions. A store made
        with ``ttl=`` does not need it (Redis expires its sessions itself); this is for
        sessions written without one, or a sweep with another limit.

        Raises:
            TypeError: ``ttl`` is not a ``timedelta`` or ``batch`` not an int.
            ValueError: ``ttl`` is not positive, or ``batch`` below 1.
            StoreBusy, StoreClosed, StoreError: as for ``prune``.
        """
        check_ttl(ttl)
        check_count(batch, "batch", minimum=1)
        cutoff = self._server_time() - ttl.total_seconds()
        return self._drop_idle(cutoff, _Meter(batch, None))

    def vacuum(self) -> None:
        """Nothing to do: Redis gives the memory of deleted keys back by itself.

        (A server whose memory is fragmented can be helped with its own
        ``activedefrag`` setting or ``MEMORY PURGE``; that is an operator's choice.)

        Raises:
            StoreClosed: the store is closed.
        """
        self._check_open()

    # -- steps -----------------------------------------------------------------------------

    def _drop_idle(self, cutoff: float, meter: _Meter) -> int:
        """Delete the sessions last active before ``cutoff``; return how many went whole."""
        sessions = 0
        gone: list[str] = []
        for session_id, _ in self._walk(descending=False, below=cutoff):
            while True:
                removed, whole = self._run(
                    self._scripts.drop_idle, session_id, repr(cutoff), meter.budget()
                )
                if removed == -3:  # an index entry whose session is already gone
                    gone.append(session_id)
                if removed < 0:
                    break
                meter.add(removed)
                if whole:
                    sessions += 1
                    gone.append(session_id)
                    break
            if len(gone) >= PAGE:
                self._unindex(gone)
                gone = []
        self._unindex(gone)
        return sessions

    def _trim_all(self, keep_last: int, meter: _Meter) -> None:
        """Trim every session that is not leased to its newest ``keep_last`` messages."""
        for chunk in chunks(self._walk(descending=False), PAGE):
            infos = self._infos([session_id for session_id, _ in chunk])
            for (session_id, _), info in zip(chunk, infos, strict=True):
                if info is None or info.leased or info.messages <= keep_last:
                    continue
                while (
                    cut := self._run(self._scripts.trim, session_id, keep_last, meter.budget())
                ) > 0:
                    meter.add(cut)

    def _count(self, cutoff: float | None, keep_last: int | None) -> int:
        """What ``prune`` would delete, counted from the sessions' records."""
        walk = self._walk(descending=False, below=None if keep_last is not None else cutoff)
        total = 0
        for chunk in chunks(walk, PAGE):
            for info in self._infos([session_id for session_id, _ in chunk]):
                if info is None or info.leased:
                    continue
                if cutoff is not None and info.updated_at < cutoff:
                    total += info.messages
                elif keep_last is not None:
                    total += max(0, info.messages - keep_last)
        return total
