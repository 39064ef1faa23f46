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
    __slots__ = ("abandoned", "done", "held")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.held = False
        self.abandoned = False


class ProcessTurns:
    """This process's turns at the write lock of one database file.

    Args:
        database: the database file; the lock is on ``lease_path(database)``.
    """

    def __init__(self, database: Path) -> None:
        self.path = lease_path(database)
        self.enabled = ofd_locks_available()
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._waiter: threading.Thread | None = None

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def _fcntl(self, command: int, kind: int) -> None:
        fcntl.fcntl(self._descriptor(), command, _FLOCK.pack(kind, os.SEEK_SET, _TURN_BYTE, 1, 0))

    def take(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for this process's turn; ``True`` once it has it.

        ``False`` (the caller then just tries SQLite's lock, as without turns) when the
        turn did not come in time or cannot be had here; never raises.
        """
        if not self.enabled:
            return False
        try:
            self._fcntl(fcntl.F_OFD_SETLK, fcntl.F_WRLCK)
            return True
        except OSError as exc:  # (opening the side file failed, too)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                self.enabled = False  # no lock here (a file system without them): poll
                return False
        request = _Request()
        self._requests.put(request)
        self._start_waiter()
        if request.done.wait(max(0.0, timeout)):
            return request.held
        with self._mutex:
            if request.held:
                return True
            request.abandoned = True  # the waiter gives it back if it comes later
            return False

    def give(self) -> None:
        """Give the turn back (after the transaction ended); never raises."""
        if self._fd is None:
            return
        try:
            self._fcntl(fcntl.F_OFD_SETLK, fcntl.F_UNLCK)
        except OSError:
            pass  # the next take() finds out

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
            try:
                self._fcntl(fcntl.F_OFD_SETLKW, fcntl.F_WRLCK)
            except OSError:
                request.done.set()  # not held: the leader polls SQLite's lock instead
                continue
            with self._mutex:
                if request.abandoned:
                    self.give()
                    continue
                request.held = True
            request.done.set()

    def close(self) -> None:
        """Close the side file's descriptor (a turn held by it ends with it)."""
        with self._mutex:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
