"""Turns at a database's write lock between processes, queued by the kernel.

SQLite does not queue writers: a writer that finds the write lock taken must try again
later, and the group-commit writer (``writer``) retries ``BEGIN IMMEDIATE`` with short
pauses. Between processes that polling both costs CPU and leaves the lock idle between a
commit and the next try. So before ``BEGIN IMMEDIATE`` a group's leader takes its
process's turn here: an exclusive open-file-description lock (``F_OFD_SETLKW``, Linux) on
the last byte of the database's side file (``lease.lease_path``; run leases use the
bytes below it). The kernel queues the waiting processes and wakes the next as soon as
the lock is given back, and it gives the lock back itself when a holder dies.

The turn is only a queue in front of SQLite's own lock, never the thing that excludes:
``BEGIN IMMEDIATE`` still decides, so a process that does not take turns (another program
writing the file, an older agentsession) is still excluded correctly, and a turn lost to
a race costs a retry, never a wrong write. The blocking wait runs in a helper thread, so
the leader waits at most until its deadline (its ``busy_timeout``); a turn granted after
the leader gave up is given back at once.

Thread-safe; one ``ProcessTurns`` per database file and process (the ``Writer``'s).
After ``fork()`` the child makes its own (``writer`` resets its writers).
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import struct
import threading
from pathlib import Path

from .lease import lease_path, ofd_locks_available

__all__ = ("ProcessTurns",)

# struct flock on 64-bit Linux (see lease._FLOCK); the last byte a lock may cover.
_FLOCK = struct.Struct("@hhqqi4x")
_TURN_BYTE = 2**63 - 1


class _Request:
    __slots__ = ("abandoned", "done", "fd", "held")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.done = threading.Event()
        self.held = False
        self.abandoned = False


def _lock(fd: int, command: int, kind: int) -> None:
    fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, _TURN_BYTE, 1, 0))


class ProcessTurns:
    """This process's turns at the write lock of one database file.

    A turn is a descriptor of the side file, opened for it and closed to give it back, so
    no descriptor stays open between writes.

    Args:
        database: the database file; the lock is on ``lease_path(database)``.
    """

    def __init__(self, database: Path) -> None:
        self.path = lease_path(database)
        self.enabled = ofd_locks_available()
        self._mutex = threading.Lock()
        self._held: int | None = None  # the descriptor holding this process's turn
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._waiter: threading.Thread | None = None

    def take(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for this process's turn; ``True`` once it has it.

        ``False`` (the caller then just tries SQLite's lock, as without turns) when the
        turn did not come in time or cannot be had here; never raises. One caller at a
        time (the writer's leader).
        """
        if not self.enabled:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return False  # a read-only folder, say: SQLite's lock alone decides
        try:
            _lock(fd, fcntl.F_OFD_SETLK, fcntl.F_WRLCK)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                self.enabled = False  # a file system without these locks: poll
                return False
        else:
            self._held = fd
            return True
        request = _Request(fd)
        self._requests.put(request)
        self._start_waiter()
        if request.done.wait(max(0.0, timeout)) and request.held:
            self._held = fd
            return True
        with self._mutex:
            if request.held:
                self._held = fd
                return True
            request.abandoned = True  # the waiter closes it (giving the turn back)
            return False

    def give(self) -> None:
        """Give the turn back (after the transaction ended); never raises."""
        fd, self._held = self._held, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases its lock

    def _start_waiter(self) -> None:
        with self._mutex:
            if self._waiter is None or not self._waiter.is_alive():
                # A daemon thread: blocked in the kernel, it must not keep the process
                # from exiting.
                self._waiter = threading.Thread(
                    target=self._wait_for_turns, name="agentsession-write-turns", daemon=True
                )
                self._waiter.start()

    def _wait_for_turns(self) -> None:
        while True:
            request = self._requests.get()
            held = False
            if not request.abandoned:
                try:
                    _lock(request.fd, fcntl.F_OFD_SETLKW, fcntl.F_WRLCK)
                    held = True
                except OSError:
                    pass  # not held: the leader polls SQLite's lock instead
            with self._mutex:
                if held and not request.abandoned:
                    request.held = True
                    request.done.set()
                    continue
                request.abandoned = True
            os.close(request.fd)
            request.done.set()
