"""Group commit: the write transactions of one SQLite database file in one process.

Every write of ``SQLiteStore`` goes through the ``Writer`` of its file. While one thread
commits, the others queue their works; the first of them then becomes the leader: it runs
every queued work (at most ``MAX_GROUP``) in ONE ``BEGIN IMMEDIATE`` transaction, each
inside its own ``SAVEPOINT``, commits once (one fsync at ``synchronous=FULL``) and hands
each caller its result. So throughput grows with the number of writing threads instead
of queueing behind one fsync each.

Promises:

- A caller returns only after the transaction holding its work has committed.
- A work that raises is rolled back to its savepoint and its caller gets the exception;
  the group's other works commit. A failed ``COMMIT`` (or a transaction SQLite rolled
  back by itself) fails every caller of the group, and nothing of the group is stored.
- Between processes, a leader first waits for its process's turn in the kernel's queue
  (``turns``; at most until the group's earliest deadline), then ``BEGIN IMMEDIATE`` is
  retried from Python with pauses of 50 us growing to 1 ms, not SQLite's busy handler
  (1, 2, 5 ... 100 ms sleeps), until the caller's timeout runs out: then its caller gets
  SQLite's busy error.
- A caller that waits past its timeout for its turn in this process gets ``StoreBusy``
  (nothing of its work ran); one whose work is already in a transaction waits for it.

Thread-safe. After ``fork()`` the child gets fresh writers (a lock held by one of the
parent's threads would otherwise stay held forever).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from ...exceptions import StoreBusy, StoreError
from .turns import ProcessTurns

__all__ = ("MAX_GROUP", "Writer", "is_busy", "writer_for")

T = TypeVar("T")

#: At most this many works share one transaction.
MAX_GROUP = 64
_FIRST_PAUSE, _MAX_PAUSE = 50e-6, 1e-3

Work = Callable[[sqlite3.Connection], Any]
Connect = Callable[[], AbstractContextManager[sqlite3.Connection]]


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked / busy"."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class _Item(Generic[T]):
    __slots__ = ("deadline", "done", "error", "event", "lead", "result", "taken", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], T], deadline: float) -> None:
        self.work = work
        self.deadline = deadline
        self.event = threading.Event()
        self.lead = False  # this item's caller is to lead the next group
        self.taken = False  # in a group's transaction now (or done)
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class Writer:
    """The group-commit writer of one database file (or one ``":memory:"`` database).

    Args:
        where: how messages name the database.
        max_group: at most this many works per transaction.
    """

    def __init__(
        self, where: str, max_group: int = MAX_GROUP, turns: ProcessTurns | None = None
    ) -> None:
        self.where = where
        self.max_group = max_group
        #: This process's place in the kernel's queue for the file's write lock (a file
        #: database on Linux), taken before ``BEGIN IMMEDIATE`` (see ``turns``).
        self._turns = turns
        self._mutex = threading.Lock()
        self._queue: deque[_Item[Any]] = deque()
        self._leading = False
        #: Held by the leader while it runs a group; ``exclusive()`` takes it too.
        self._turn = threading.Lock()
        #: Groups committed and works run, since the writer was made (for tests, figures).
        self.groups = 0
        self.works = 0

    # -- the caller's side -----------------------------------------------------------------

    def write(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        connect: Connect,
        timeout: float,
        busy_timeout_ms: int,
        discard: Callable[[sqlite3.Connection], None] | None = None,
    ) -> T:
        """Run ``work(conn)`` in a committed write transaction and return what it returned.

        Args:
            work: the work; it must not commit or roll back itself.
            connect: gives the calling thread's connection (a context manager); used if
                this caller leads a group.
            timeout: seconds this call may wait for its turn and for the write lock.
            busy_timeout_ms: the connection's own busy timeout, restored after ``BEGIN``.
            discard: called with a connection that could not roll back (drop it).

        Raises:
            StoreBusy: the turn did not come within ``timeout`` (nothing of ``work`` ran).
            sqlite3.Error: the database failed, or stayed locked by another process past
                ``timeout`` (SQLite's busy error); nothing of ``work`` is stored.
            Exception: whatever ``work`` raised; nothing of it is stored.
        """
        item: _Item[T] = _Item(work, time.monotonic() + timeout)
        with self._mutex:
            self._queue.append(item)
            if not self._leading:
                self._leading = True
                item.lead = True
        while not item.done:
            if item.lead:
                self._lead(item, connect, busy_timeout_ms, discard)
                break
            # Once in a transaction, the work cannot be given up: wait for the commit.
            remaining = None if item.taken else max(0.0, item.deadline - time.monotonic())
            if item.event.wait(remaining):
                with self._mutex:
                    item.event.clear()
                continue
            with self._mutex:
                if item.taken or item.lead:
                    continue  # in a transaction now, or to lead: no giving up
                self._queue.remove(item)
            raise StoreBusy(
                f"database {self.where} stayed locked by other writers in this process for "
                f"more than busy_timeout={timeout} s"
            )
        if item.error is not None:
            raise item.error
        return cast(T, item.result)

    @contextlib.contextmanager
    def exclusive(self, timeout: float | None = None) -> Iterator[None]:
        """Keep every writer of this process waiting while the block runs (``VACUUM``).

        Raises:
            StoreBusy: the writers did not pause within ``timeout`` seconds.
        """
        if not self._turn.acquire(timeout=-1 if timeout is None else timeout):
            raise StoreBusy(
                f"database {self.where} stayed locked by other writers in this process for "
                f"more than {timeout} s"
            )
        try:
            yield
        finally:
            self._turn.release()

    # -- the leader's side ----------------------------------------------------------------

    def _lead(
        self,
        item: _Item[Any],
        connect: Connect,
        busy_timeout_ms: int,
        discard: Callable[[sqlite3.Connection], None] | None,
    ) -> None:
        """Run groups until ``item``'s has committed; then pass the lead on."""
        try:
            if not self._turn.acquire(timeout=max(0.0, item.deadline - time.monotonic())):
                with self._mutex:
                    if not item.taken:
                        self._queue.remove(item)
                        item.done = True
                        item.error = StoreBusy(
                            f"database {self.where} stayed locked by other writers in this "
                            "process (a vacuum) for more than the busy timeout"
                        )
                return
            try:
                while not item.done:
                    with self._mutex:
                        group = [
                            self._queue.popleft()
                            for _ in range(min(self.max_group, len(self._queue)))
                        ]
                        for member in group:
                            member.taken = True
                    self._commit(group, item, connect, busy_timeout_ms, discard)
            finally:
                self._turn.release()
        finally:
            with self._mutex:
                item.lead = False
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.event.set()
                else:
                    self._leading = False

    def _commit(
        self,
        group: list[_Item[Any]],
        leader: _Item[Any],
        connect: Connect,
        busy_timeout_ms: int,
        discard: Callable[[sqlite3.Connection], None] | None,
    ) -> None:
        interrupted: BaseException | None = None
        turns = self._turns
        turn = False
        try:
            with connect() as conn:
                if turns is not None:
                    deadline = min(member.deadline for member in group)
                    turn = turns.take(deadline - time.monotonic())
                group = self._begin(conn, group, busy_timeout_ms)
                if not group:
                    return
                try:
                    self._run_group(conn, group)
                    conn.execute("COMMIT")
                except BaseException as exc:
                    _rollback(conn, discard)
                    for member in group:
                        member.result = None
                        member.error = exc
                    if not isinstance(exc, Exception):
                        interrupted = exc
                        raise
                else:
                    self.groups += 1
                    self.works += len(group)
        except Exception as exc:  # connect() or BEGIN failed: nothing ran
            for member in group:
                if not member.done:
                    member.error = exc
        finally:
            if turn:
                turns.give()  # type: ignore[union-attr]
            for member in group:
                if interrupted is not None and member is not leader:
                    # A KeyboardInterrupt in the leader's thread is for the leader alone.
                    error = StoreError(f"database {self.where}: the write was interrupted")
                    error.__cause__ = interrupted
                    member.error = error
                self._finish(member)

    def _begin(
        self, conn: sqlite3.Connection, group: list[_Item[Any]], busy_timeout_ms: int
    ) -> list[_Item[Any]]:
        """``BEGIN IMMEDIATE``, retried while busy; returns the members still waiting.

        A member whose deadline passes while another process writes gets SQLite's busy
        error and leaves the group (nothing of it ran).
        """
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            pause = _FIRST_PAUSE
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return group
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise
                    now = time.monotonic()
                    waiting = []
                    for member in group:
                        if member.deadline <= now:
                            member.error = exc
                            self._finish(member)
                        else:
                            waiting.append(member)
                    group[:] = waiting
                    if not group:
                        return group
                time.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
        finally:
            with contextlib.suppress(sqlite3.Error):  # a closed connection: the next call says so
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

    @staticmethod
    def _run_group(conn: sqlite3.Connection, group: list[_Item[Any]]) -> None:
        if len(group) == 1:
            # Alone in its transaction, a work that fails takes the whole transaction
            # with it (the caller rolls back): no savepoint needed. Fewer statements
            # matter: each one gives up the GIL and may wait to get it back.
            group[0].result = group[0].work(conn)
            return
        # Works rarely fail (input is checked before the transaction), so first run them
        # all under one savepoint; only if one fails, roll back to it and run each in a
        # savepoint of its own, so that the failing one fails alone. Same outcome, one
        # statement per group instead of two per work.
        conn.execute("SAVEPOINT agentsession_group")
        try:
            results = [member.work(conn) for member in group]
        except Exception:
            if not conn.in_transaction:
                raise  # SQLite rolled the whole transaction back: the group failed
            conn.execute("ROLLBACK TO agentsession_group")
        else:
            for member, result in zip(group, results, strict=True):
                member.result = result
            return
        for member in group:
            conn.execute("SAVEPOINT agentsession_work")
            try:
                member.result = member.work(conn)
            except Exception as exc:
                if not conn.in_transaction:
                    raise  # SQLite rolled the whole transaction back: the group failed
                conn.execute("ROLLBACK TO agentsession_work")
                conn.execute("RELEASE agentsession_work")
                member.error = exc
            else:
                conn.execute("RELEASE agentsession_work")

    def _finish(self, member: _Item[Any]) -> None:
        with self._mutex:
            member.done = True
            member.taken = True
        member.event.set()


def _rollback(
    conn: sqlite3.Connection, discard: Callable[[sqlite3.Connection], None] | None
) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        # A connection that cannot roll back is in an unknown state: drop it.
        if discard is not None:
            discard(conn)


_writers: dict[str, Writer] = {}
_writers_guard = threading.Lock()


def writer_for(path: Path, synchronous: str = "FULL", where: str | None = None) -> Writer:
    """The writer of database file ``path`` in this process, one per file and setting.

    Stores of one file with different ``synchronous`` settings get different writers
    (a group runs on its leader's connection, with its leader's settings); those
    writers then take turns through SQLite's write lock, as processes do.
    """
    key = f"{path}\0{synchronous}"
    with _writers_guard:
        writer = _writers.get(key)
        if writer is None:
            writer = _writers[key] = Writer(where or str(path), turns=ProcessTurns(path))
        return writer


def _reset_writers() -> None:
    global _writers_guard
    _writers.clear()
    _writers_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_writers)
