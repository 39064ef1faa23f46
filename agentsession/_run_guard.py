"""Whole turns: one run at a time per session, and a failed run leaves nothing behind.

The runner enters a ``RunGuard`` around every run with memory. It takes the session's
run lease (in the store, so runs in other processes wait too; in this process for a
memory of the user's own), notes how many messages the session held, and on the way out
removes what a failed run stored (model error, guardrail tripwire, max turns exceeded,
cancellation, Ctrl-C) and gives the lease back. Both steps are shielded from
cancellation so they always finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Literal

import anyio

from .exceptions import SessionBusy
from .memory import StoreMemory

__all__ = ("RunGuard",)

logger = logging.getLogger("agentsession")

FailedRuns = Literal["rollback", "keep"]
SessionLock = Literal["wait", "fail", "off"]

#: How long a store lease lasts unless renewed; renewed every third of it while running.
LEASE_SECONDS = 30.0
_FIRST_PAUSE, _MAX_PAUSE = 0.01, 0.5


class _LocalLeases:
    """Run leases for memories without a store: good within one process only."""

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
        session_id: the run's session.
        failed_runs: ``"rollback"`` removes what a failed run stored; ``"keep"`` keeps
            it, as the SDK does.
        session_lock: ``"wait"`` for another run on the session to end (up to
            ``lock_timeout`` seconds), ``"fail"`` at once, or ``"off"``.
        lock_timeout: seconds to wait for the session.
    """

    def __init__(
        self,
        memory: Any,
        session_id: str,
        *,
        failed_runs: FailedRuns,
        session_lock: SessionLock,
        lock_timeout: float,
    ) -> None:
        self.memory = memory
        self.session_id = session_id
        self.failed_runs = failed_runs
        self.session_lock = session_lock
        self.lock_timeout = lock_timeout
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._mark: int | None = None
        self._locked = False
        self._renewal: asyncio.Task[None] | None = None

    # -- the lease -----------------------------------------------------------------------

    async def _try_lock(self) -> bool:
        if isinstance(self.memory, StoreMemory) and hasattr(self.memory.store, "try_lock"):
            locked: bool = await self.memory._call(
                self.memory.store.try_lock, self.session_id, self.owner, LEASE_SECONDS
            )
            return locked
        return _local_leases.try_lock(self.memory, self.session_id, self.owner)

    async def _unlock(self) -> None:
        if isinstance(self.memory, StoreMemory) and hasattr(self.memory.store, "unlock"):
            await self.memory._call(self.memory.store.unlock, self.session_id, self.owner)
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

    # -- the mark and the rollback ---------------------------------------------------------

    async def _count(self) -> int | None:
        if isinstance(self.memory, StoreMemory) and hasattr(self.memory.store, "message_count"):
            n: int = await self.memory._call(self.memory.store.message_count, self.session_id)
            return n
        if callable(getattr(self.memory, "pop_message", None)):
            return len(await self.memory.get_messages(self.session_id) or [])
        return None

    async def _rollback(self) -> None:
        mark = self._mark
        if mark is None:
            return
        if isinstance(self.memory, StoreMemory) and hasattr(self.memory.store, "truncate"):
            await self.memory._call(self.memory.store.truncate, self.session_id, mark)
            return
        current = await self._count()
        while current is not None and current > mark:
            await self.memory.pop_message(self.session_id)
            current -= 1

    # -- the context manager -------------------------------------------------------------

    async def __aenter__(self) -> RunGuard:
        if self.session_lock != "off":
            await self._acquire()
        try:
            if self.failed_runs == "rollback":
                self._mark = await self._count()
                if self._mark is None:
                    logger.warning(
                        "%s has no message_count or pop_message: a failed run's items "
                        "cannot be rolled back and are kept",
                        type(self.memory).__name__,
                    )
            if self._locked and isinstance(self.memory, StoreMemory):
                self._renewal = asyncio.get_running_loop().create_task(self._renew())
        except BaseException:
            await self._release()
            raise
        return self

    async def _release(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        if self._locked:
            self._locked = False
            await self._unlock()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        with anyio.CancelScope(shield=True):
            try:
                if exc_type is not None and self.failed_runs == "rollback":
                    await self._rollback()
            finally:
                await self._release()
