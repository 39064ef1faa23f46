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

With a ``ledger`` (the memory is a ``LedgerMemory``), the run's ``RunRecord`` rides in
that one write; a run rolled back writes its record alone. With a ``budget``, the
session's recorded tokens are read once the lease is held, and a spent budget raises
``SessionBudgetExceeded`` before the run reads or sends anything.
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

from ._ledger import outcome_of
from .exceptions import SessionBudgetExceeded, SessionBusy
from .protocol import LeasingMemory

if TYPE_CHECKING:
    from ._ledger import RunLedger
    from .session import MemorySession

__all__ = ("FailedRuns", "RunGuard", "SessionLock")

logger = logging.getLogger("agentsession")

FailedRuns = Literal["rollback", "keep"]
SessionLock = Literal["wait", "fail", "off"]

#: How long a lease that expires lasts unless renewed; renewed every third of it.
LEASE_SECONDS = 30.0
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
        ledger: records what the run spends (``None``: the memory keeps no ledger).
        budget: refuse the run if the session's ledger records this many total tokens
            or more (``None``: no budget; needs a ``ledger``).
    """

    def __init__(
        self,
        memory: Any,
        session: MemorySession,
        *,
        failed_runs: FailedRuns,
        session_lock: SessionLock,
        lock_timeout: float,
        ledger: RunLedger | None = None,
        budget: int | None = None,
    ) -> None:
        self.memory = memory
        self.ledger = ledger
        self.budget = budget
        self.session = session
        self.session_id = session.session_id
        self.failed_runs = failed_runs
        self.session_lock = session_lock
        self.lock_timeout = lock_timeout
        self.owner = f"{_PROCESS}{next(_runs)}"
        self._leasing = isinstance(memory, LeasingMemory)
        self._locked = False
        self._started = False
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

    async def _check_budget(self) -> None:
        assert self.budget is not None
        spent = (await self.memory.usage(self.session_id)).total_tokens
        if spent >= self.budget:
            raise SessionBudgetExceeded(self.session_id, spent, self.budget)

    async def __aenter__(self) -> RunGuard:
        if self.session_lock != "off":
            await self._acquire()
        if self.budget is not None:
            try:
                await self._check_budget()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._release()
                raise
        if self.ledger is not None:
            self.ledger.start()
        self._started = True
        self.session.begin_run()
        if self._locked and self._leasing and self.memory.lease_expires:
            self._renewal = asyncio.get_running_loop().create_task(self._renew())
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._end_run(exc_type)
            finally:
                await self._release()

    async def _end_run(self, exc_type: Any) -> None:
        commit = exc_type is None or self.failed_runs == "keep"
        if self.ledger is None or not self._started:
            await self.session.end_run(commit=commit)
            return
        self._started = False
        items = self.session.pending if commit else 0
        run = self.ledger.record(self.session_id, self.owner, items, outcome_of(exc_type))
        if commit and items:
            await self.session.end_run(commit=True, run=run)
            return
        try:
            await self.session.end_run(commit=commit, run=run)
        except Exception as exc:
            if exc_type is None:
                raise
            # The run's own error is what the caller needs; a record lost with it is not.
            logger.warning("could not record the failed run of %r: %s", self.session_id, exc)
