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

With a ``RunMemory`` (every agentsession memory) the run's store work is two calls: the
lease is taken together with the read the SDK makes first (``lock_and_read``; the bound
session hands the SDK that result), and the items are written together with giving the
lease back (``write_and_unlock``): one thread hop and one round trip each. ``run_sync``
makes those two calls in its own, blocked, thread (``enter_sync`` / ``exit_sync``), so
they cost no thread hop at all.

With a ``ledger`` (the memory is a ``LedgerMemory``), the run's ``RunRecord`` rides in
that one write (``write_and_unlock(..., run=)`` or ``add_messages(..., run=)``); a run
rolled back writes its record alone. With a ``budget``, the session's recorded tokens
are read once the lease is held, and a spent budget raises ``SessionBudgetExceeded``
before the run reads or sends anything else.
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

from ._auto_compaction import compact_before_run
from ._ledger import outcome_of
from .exceptions import SessionBudgetExceeded, SessionBusy
from .memory import StoreMemory
from .protocol import LeasingMemory, RunMemory

if TYPE_CHECKING:
    from ._ledger import RunLedger
    from .compaction import Compaction
    from .protocol import RunRecord
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

#: ``(LeasingMemory, RunMemory)`` of each memory class seen: an ``isinstance`` check
#: against a runtime protocol costs tens of microseconds, too much for every run.
_kinds: dict[type, tuple[bool, bool]] = {}


def _kind(memory: object) -> tuple[bool, bool]:
    """Whether ``memory`` is a ``LeasingMemory``, and a ``RunMemory`` (per class)."""
    cls = type(memory)
    kind = _kinds.get(cls)
    if kind is None:
        kind = _kinds[cls] = (isinstance(memory, LeasingMemory), isinstance(memory, RunMemory))
    return kind


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
        session_settings: the run's ``RunConfig.session_settings`` (the SDK's first read
            of the session depends on them).
        budget: refuse the run if the session's ledger records this many total tokens
            or more (``None``: no budget; the memory must keep a ledger).
        compaction: compact before the run (``RunConfig.compaction``), or ``None``.
        tracing_disabled: the run's ``RunConfig.tracing_disabled``, which the summary run
            of its automatic compaction follows.

    ``ledger`` (a ``RunLedger``, set by the runner before the run when the memory keeps a
    usage ledger) records what the run spends.
    """

    def __init__(
        self,
        memory: Any,
        session: MemorySession,
        *,
        failed_runs: FailedRuns,
        session_lock: SessionLock,
        lock_timeout: float,
        session_settings: Any = None,
        budget: int | None = None,
        compaction: Compaction | None = None,
        tracing_disabled: bool = False,
    ) -> None:
        self.memory = memory
        self.compaction = compaction
        self.tracing_disabled = tracing_disabled
        self.ledger: RunLedger | None = None
        self.budget = budget
        self._started = False
        self.session = session
        self.session_id = session.session_id
        self.failed_runs = failed_runs
        self.session_lock = session_lock
        self.lock_timeout = lock_timeout
        self.session_settings = session_settings
        self.owner = f"{_PROCESS}{next(_runs)}"
        self._leasing, self._combined = _kind(memory)
        self._locked = False
        self._renewal: asyncio.Task[None] | None = None

    @property
    def runs_in_caller(self) -> bool:
        """Whether ``run_sync`` may do this run's store work in its own thread
        (``enter_sync`` / ``exit_sync``): an agentsession memory whose run calls are its
        own, with the lease on."""
        memory = type(self.memory)
        return (
            self.session_lock != "off"
            and self.compaction is None  # the summary model call needs the event loop
            and issubclass(memory, StoreMemory)
            and memory.lock_and_read is StoreMemory.lock_and_read
            and memory.write_and_unlock is StoreMemory.write_and_unlock
        )

    # -- the lease -----------------------------------------------------------------------

    async def _try_lock(self) -> bool:
        if self._leasing:
            locked: bool = await self.memory.try_lock(self.session_id, self.owner, LEASE_SECONDS)
            return locked
        return _local_leases.try_lock(self.memory, self.session_id, self.owner)

    async def _take(self) -> bool:
        """Take the lease; with a ``RunMemory``, make the SDK's first read with it."""
        read = self.session.first_read(self.session_settings) if self._combined else None
        if read is None:
            return await self._try_lock()
        messages = await self.memory.lock_and_read(
            self.session_id, self.owner, LEASE_SECONDS, read[0], tool_safe=read[1]
        )
        return self.session.prefetch(read, messages)

    def _take_sync(self) -> bool:
        """``_take`` with the store's blocking calls, in the calling thread."""
        store = self.memory.store
        read = self.session.first_read(self.session_settings)
        if read is None:
            return bool(store.try_lock(self.session_id, self.owner, LEASE_SECONDS))
        messages = store.lock_and_read(
            self.session_id, self.owner, LEASE_SECONDS, read[0], tool_safe=read[1]
        )
        return self.session.prefetch(read, messages)

    async def _unlock(self) -> None:
        if self._leasing:
            await self.memory.unlock(self.session_id, self.owner)
        else:
            _local_leases.unlock(self.memory, self.session_id, self.owner)

    def _busy(self) -> SessionBusy | None:
        """The error to give up with now, or ``None`` to wait and try again."""
        if self.session_lock == "fail":
            return SessionBusy(
                f"session {self.session_id!r} is in use by another run "
                '(RunConfig(session_lock="fail") does not wait)'
            )
        if time.monotonic() >= self._deadline:
            return SessionBusy(
                f"session {self.session_id!r} stayed in use by another run for more "
                f"than lock_timeout={self.lock_timeout} s"
            )
        return None

    async def _acquire(self) -> None:
        self._deadline = time.monotonic() + self.lock_timeout
        pause = _FIRST_PAUSE
        while not await self._take():
            error = self._busy()
            if error is not None:
                raise error
            await anyio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE)
        self._locked = True

    def _acquire_sync(self) -> None:
        self._deadline = time.monotonic() + self.lock_timeout
        pause = _FIRST_PAUSE
        while not self._take_sync():
            error = self._busy()
            if error is not None:
                raise error
            time.sleep(pause)
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
        await self.stop_renewal()
        if self._locked:
            self._locked = False
            await self._unlock()

    # -- the ledger and the budget -------------------------------------------------------

    def _over_budget(self, spent: int) -> SessionBudgetExceeded | None:
        assert self.budget is not None
        if spent >= self.budget:
            return SessionBudgetExceeded(self.session_id, spent, self.budget)
        return None

    def _begin(self) -> None:
        if self.ledger is not None:
            self.ledger.start()
        self._started = True
        self.session.begin_run()

    def _record(self, error: Any, exc: BaseException | None = None) -> RunRecord | None:
        """The run's record as it ends (``error``: the type it failed with, or ``None``;
        ``exc``: the exception), once; ``None`` without a ledger or for a run that never
        started."""
        if self.ledger is None or not self._started:
            return None
        if exc is not None:
            self.ledger.ended(exc)  # the agent the SDK says was running when it failed
        self._started = False
        commit = error is None or self.failed_runs == "keep"
        items = self.session.pending if commit else 0
        return self.ledger.record(self.session_id, self.owner, items, outcome_of(error))

    def _lost_record(self, alone: bool, exc: Exception) -> None:
        """The run's last write failed. When it held only the record of a failed run,
        the run's own error is what the caller needs: this one is logged. Otherwise it
        is raised, as a failed write always was."""
        if not alone:
            raise exc
        logger.warning("could not record the failed run of %r: %s", self.session_id, exc)

    # -- the context manager -------------------------------------------------------------

    async def __aenter__(self) -> RunGuard:
        if self.session_lock != "off":
            await self._acquire()
        if self.budget is not None:
            try:
                spent = (await self.memory.usage(self.session_id)).total_tokens
                error = self._over_budget(spent)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._release()
                raise
            if error is not None:
                with anyio.CancelScope(shield=True):
                    await self._release()
                raise error
        if self.compaction is not None:
            await self._compact()
        self._begin()
        if self._renewal is None:
            self.start_renewal()
        return self

    async def _compact(self) -> None:
        """Automatic compaction (``_auto_compaction``), the lease renewed meanwhile; on
        failure the lease is given back and the error raised: the run does not start."""
        assert self.compaction is not None
        self.start_renewal()
        try:
            await compact_before_run(self, self.compaction)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release()
            raise

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        commit = exc_type is None or self.failed_runs == "keep"
        run = self._record(exc_type, exc)
        with anyio.CancelScope(shield=True):
            if self._locked and self._combined:
                await self.stop_renewal()
                self._locked = False
                items = self.session.take_run(commit=commit)
                try:
                    if run is None:
                        await self.memory.write_and_unlock(self.session_id, self.owner, items)
                    else:
                        await self.memory.write_and_unlock(
                            self.session_id, self.owner, items, run=run
                        )
                except Exception as error:
                    self._lost_record(run is not None and exc_type is not None and not items, error)
                return
            alone = run is not None and exc_type is not None and not run.items_added
            try:
                await self.session.end_run(commit=commit, run=run)
            except Exception as error:
                self._lost_record(alone, error)
            finally:
                await self._release()

    # -- run_sync: the store work in the calling thread (see runs_in_caller) ---------------

    def enter_sync(self) -> None:
        """Take the session (waiting as ``session_lock`` says) and make the SDK's first
        read, with blocking store calls in this thread; then hold the run's items.

        Raises:
            SessionBusy: as for ``__aenter__``.
            StoreError: the backend failed; nothing is held.
        """
        self._acquire_sync()
        if self.budget is not None:
            try:
                error = self._over_budget(self.memory.store.usage(self.session_id).total_tokens)
            except BaseException:
                self._locked = False
                self.memory.store.unlock(self.session_id, self.owner)
                raise
            if error is not None:
                self._locked = False
                self.memory.store.unlock(self.session_id, self.owner)
                raise error
        self._begin()

    def start_renewal(self) -> None:
        """Renew an expiring lease while the run lasts (on the running event loop)."""
        if self._locked and self._leasing and self.memory.lease_expires:
            self._renewal = asyncio.get_running_loop().create_task(self._renew())

    async def stop_renewal(self) -> None:
        """Stop renewing the lease, and wait until a renewal under way has ended, so it
        cannot take the lease again after the run gave it back (on the renewal's loop)."""
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            renewal.cancel()
            await asyncio.wait([renewal])

    def exit_sync(self, *, failed: bool, error: BaseException | None = None) -> None:
        """Write the run's items (or drop them, if it ``failed`` and failed runs roll
        back) and give the lease back, in one blocking store call in this thread.

        Args:
            failed: whether the run failed.
            error: what it failed with, for its record's outcome.

        Raises:
            TypeError: a held item cannot be stored; nothing is.
            StoreError: the backend failed; nothing of the run is stored.
        """
        kind = (type(error) if error is not None else RuntimeError) if failed else None
        run = self._record(kind, error)
        items = self.session.take_run(commit=not failed or self.failed_runs == "keep")
        if self._locked:
            self._locked = False
            try:
                if run is None:
                    self.memory.store.write_and_unlock(self.session_id, self.owner, items)
                else:
                    self.memory.store.write_and_unlock(self.session_id, self.owner, items, run=run)
            except Exception as exc:
                self._lost_record(run is not None and failed and not items, exc)
