"""Retention for ``RedisStore``: prune old sessions and long histories, in small steps.

The storage work of ``RedisStore``'s retention hooks, as functions of its ``Keyspace``.
Every step is one script on one session that deletes at most ``batch`` messages, so a
prune of millions of messages never blocks Redis for long: other clients' commands run
between steps. Sessions that a run holds the lease of (see ``try_lock``) are left
alone; the script checks the lease and, for idle sessions, that the session is still
idle, in the same step as the deletion. Cut-off times are taken from the Redis server's
clock, like every stored time.
"""

from __future__ import annotations

from ..base import Progress
from .core import PAGE, Keyspace, chunks

__all__ = ("Meter", "count", "drop_idle", "trim_all")


class Meter:
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


# -- steps -----------------------------------------------------------------------------


def drop_idle(ks: Keyspace, cutoff: float, meter: Meter) -> int:
    """Delete the sessions last active before ``cutoff``; return how many went whole."""
    sessions = 0
    gone: list[str] = []
    for session_id, _ in ks.walk(descending=False, below=cutoff):
        while True:
            removed, whole = ks.run_ledger(
                ks.scripts.drop_idle, session_id, repr(cutoff), meter.budget()
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
            ks.unindex(gone)
            gone = []
    ks.unindex(gone)
    return sessions


def trim_all(ks: Keyspace, keep_last: int, meter: Meter) -> None:
    """Trim every session that is not leased to its newest ``keep_last`` messages."""
    for chunk in chunks(ks.walk(descending=False), PAGE):
        infos = ks.infos([session_id for session_id, _ in chunk])
        for (session_id, _), info in zip(chunk, infos, strict=True):
            if info is None or info.leased or info.messages <= keep_last:
                continue
            while (cut := ks.run(ks.scripts.trim, session_id, keep_last, meter.budget())) > 0:
                meter.add(cut)


def count(ks: Keyspace, cutoff: float | None, keep_last: int | None) -> int:
    """What ``prune`` would delete, counted from the sessions' records."""
    walk = ks.walk(descending=False, below=None if keep_last is not None else cutoff)
    total = 0
    for chunk in chunks(walk, PAGE):
        for info in ks.infos([session_id for session_id, _ in chunk]):
            if info is None or info.leased:
                continue
            if cutoff is not None and info.updated_at < cutoff:
                total += info.messages
            elif keep_last is not None:
                total += max(0, info.messages - keep_last)
    return total
