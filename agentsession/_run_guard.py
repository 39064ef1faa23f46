"""Whole turns: one run at a time per session, and a failed run leaves nothing behind.

The runner enters a ``RunGuard`` around every run with memory. It takes the session's
run lease (from the memory when it is a ``LeasingMemory``, so runs in other processes
wait too; otherwise in this process only), then has the bound session hold what the run
adds. On the way out the held items are written in one ``add_messages`` call, or dropped
when the run failed (model error, guardrail tripwire, max turns exceeded, cancellation,
Ctrl-C), and the lease is given back. Both steps are shielded from cancellation so they
always finish.

So a run costs one write, and nothing needs rolling back: a failed run, or a process
killed mid-run, never wrote anything.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

import anyio

from .exceptions import SessionBusy
from .protocol import LeasingMemory

if TYPE_CHECKING:
    from .session import MemorySession

__all__ = ("FailedRuns", "RunGuard", "SessionLock")

logger = logging.getLogger("agentsession")

FailedRuns = Literal["rollback", "keep"]
SessionLock = Literal["wait", "fail", "off"]

#: How long a lease that expires (Redis's lease keys; SQLite's locks table where OFD locks
#: are missing) lasts unless renewed; renewed every third of it. So a process killed while
#: it holds one (SIGKILL, a crash) blocks the session for at most this long, and a run
#: costs one renewal round trip per LEASE_SECONDS / 3 of its length, off the add/read path.
LEASE_SECONDS = 5.0
#: Pauses between tries while another run holds the session: short at first, so a run
#: that ends soon hands over at once, then longer, so waiting costs little.
_FIRST_PAUSE, _MAX_PAUSE = 0.001, 0.1

#: ``host:pid:<random>:`` of this process, the start of every owner name; the random part
#: tells apart two processes that had one pid (on two hosts of one name, or over time).
_PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}:"
#: Numbers the runs of this process: unique with the prefix, and cheaper than a uuid4 per
#: run (os.urandom gives up the GIL, which a busy process pays for in waiting).
_runs = itertools.count(1)


def _reset_process() -> None:
    global _PROCESS
    _PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}:"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_process)


class _LocalLeases:
    """Run leases for memories without a lease of their own: good within one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[int, str], str] = {}

    def try_lock(self, memory: object, session_id: str, owner: str) -> bool:
        with self._lock:
            holder = self._held.setdefault((id(memory), session_id), owner)
            return holder == owner

    def unlock(self, memory: object, session_id: str, owner: str) -> None:
        with self._lock:
            if self._held.get((id(memory), session_id)) == owner:
                del self._held[(id(memory), session_id)]


_local_leases = _LocalLeases()


class RunGuard:
    """Holds a session for one run; see the module docstring.

    Args:
        memory: the run's memory.
        session: the run's bound session (``MemorySession``), which holds the run's
            items until the guard is left.
        failed_runs: ``"rollback"`` drops what a failed run added; ``"keep"`` writes it,
            as the SDK does.
        session_lock: ``"wait"`` for another run on the session to end (up to
            ``lock_timeout`` seconds), ``"fail"`` at once, or ``"off"``.
        lock_timeout: seconds to wait for the session.
    """

    def __init__(
        self,
        memory: Any,
        session: MemorySession,
        *,
        failed_runs: FailedRuns,
        session_lock: SessionLock,
        lock_timeout: float,
    ) -> None:
        self.memory = memory
        self.session = session
        self.session_id = session.session_id
        self.failed_runs = failed_runs
        self.session_lock = session_lock
        self.lock_timeout = lock_timeout
        self.owner = f"{_PROCESS}{next(_runs)}"
        self._leasing = isinstance(memory, LeasingMemory)
        self._locked = False
        self._renewal: asyncio.Task[None] | None = None

    # -- the lease -----------------------------------------------------------------------

    async def _try_lock(self) -> bool:
        if self._leasing:
            locked: bool = await self.memory.try_lock(self.session_id, self.owner, LEASE_SECONDS)
            return locked
        return _local_leases.try_lock(self.memory, self.session_id, self.owner)

    async def _unlock(self) -> None:
        if self._leasing:
            await self.memory.unlock(self.session_id, self.owner)
        else:
            _local_leases.unlock(self.memory, self.session_id, self.owner)

    async def _acquire(self) -> None:
        deadline = time.monotonic() + self.lock_timeout
        pause = _FIRST_PAUSE
        while not await self._try_lock():
            if self.session_lock == "fail":
                raise SessionBusy(
                    f"session {self.session_id!r} is in use by another run "
                    '(RunConfig(session_lock="fail") does not wait)'
                )
            if time.monotonic() >= deadline:
                raise SessionBusy(
                    f"session {self.session_id!r} stayed in use by another run for more "
                    f"than lock_timeout={self.lock_timeout} s"
                )
            await anyio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE)
        self._locked = True

    async def _renew(self) -> None:
        while True:
            await anyio.sleep(LEASE_SECONDS / 3)
            try:
                await self._try_lock()
            except Exception:  # the run goes on; the next renewal may succeed
                logger.warning("could not renew the run lease of %r", self.session_id)

    async def _release(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        if self._locked:
            self._locked = False
            await self._unlock()

    # -- the context manager -------------------------------------------------------------

    async def __aenter__(self) -> RunGuard:
        if self.session_lock != "off":
            await self._acquire()
        self.session.begin_run()
        if self._locked and self._leasing and self.memory.lease_expires:
            self._renewal = asyncio.get_running_loop().create_task(self._renew())
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.session.end_run(commit=exc_type is None or self.failed_runs == "keep")
            finally:
                await self._release()
