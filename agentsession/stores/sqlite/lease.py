"""Session run leases for ``SQLiteStore`` that cost no database write.

On Linux a lease is an open-file-description lock (``F_OFD_SETLK``) on one byte of a side
file beside the database (``<db>-leases``, created readable by its owner only): the byte
at offset = a 63-bit hash of the session id, locked exclusively. The kernel arbitrates
between every thread and process that opens the side file, and releases a dying
process's locks itself, so a lease needs no expiry, no renewal and no row. Within one
``FileLeases`` (one per store) a table of the sessions held here decides between owners
of this process; the kernel decides between stores and processes.

``":memory:"`` databases are private to one store, so an in-process table is enough
(``MemoryLeases``). Where ``F_OFD_*`` is missing (not Linux), ``TableLeases`` keeps the
leases in the database's locks table, as before: writes that expire unless renewed.

Every class here is thread-safe. After ``fork()`` the child holds none of the parent's
leases; the parent keeps holding them.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import sqlite3
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ...exceptions import StoreError
from ...protocol import LeaseHolder
from ..base import check_lease
from ..holders import holder_of_owner, this_process
from .schema import LOCKS

__all__ = (
    "NOT_LEASED",
    "SQL_FUNCTION",
    "FileLeases",
    "Leases",
    "MemoryLeases",
    "TableLeases",
    "lease_path",
    "lease_offset",
    "ofd_lock_holder",
    "ofd_locks_available",
)

T = TypeVar("T")

#: The SQL function every connection gets: ``agentsession_leased(session_id)`` is 1 while
#: a run (of any thread or process) holds the session's lease.
SQL_FUNCTION = "agentsession_leased"

#: SQL condition on a sessions row ``s``: no run holds its lease (bind the current time,
#: for leases kept in the locks table). History management leaves running sessions alone.
NOT_LEASED = (
    f"(NOT {SQL_FUNCTION}(s.session_id) AND NOT EXISTS (SELECT 1 FROM {LOCKS} l "
    "WHERE l.session_id = s.session_id AND l.expires_at > ?))"
)

# struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid (+ padding).
_FLOCK = struct.Struct("@hhqqi4x")
_OFFSETS = 2**63 - 1  # the last byte must fit in off_t: offsets 0 .. 2**63 - 2


def ofd_locks_available() -> bool:
    """Whether open-file-description locks can be used here (64-bit Linux)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(fcntl, "F_OFD_SETLK")
        and struct.calcsize("P") == 8
    )


def lease_path(database: Path) -> Path:
    """The side file the leases of ``database`` are locks on."""
    return database.with_name(database.name + "-leases")


def lease_offset(session_id: str) -> int:
    """The byte of the side file that stands for ``session_id``: a 63-bit hash."""
    digest = hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _OFFSETS


def ofd_lock_holder(path: Path, offset: int) -> int | None:
    """The pid of a process of this host holding an OFD lock on byte ``offset`` of
    ``path``, found in ``/proc``; ``None`` if none is found.

    The kernel reports no pid for OFD locks (``F_OFD_GETLK`` and ``/proc/locks`` give
    -1), but ``/proc/<pid>/fdinfo/<fd>`` lists the locks of each open file: this looks
    through the descriptors of every process it may read for one open on ``path`` whose
    file holds a lock covering ``offset``. It takes a few milliseconds per hundred
    processes; a holder on another host (a network file system), or a process this user
    may not inspect, is not found.
    """
    try:
        wanted = os.stat(path)
        processes = os.listdir("/proc")
    except OSError:
        return None
    name = path.name
    for pid in processes:
        if not pid.isdigit():
            continue
        fds = f"/proc/{pid}/fd"
        try:
            descriptors = os.listdir(fds)
        except OSError:  # gone, or not ours to read
            continue
        for fd in descriptors:
            try:
                # The link names the file; only a name like ours is worth a stat.
                if name not in os.readlink(f"{fds}/{fd}"):
                    continue
                found = os.stat(f"{fds}/{fd}")
                if (found.st_dev, found.st_ino) != (wanted.st_dev, wanted.st_ino):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii", errors="replace") as f:
                    info = f.read()
            except OSError:
                continue
            if _covers(info, wanted.st_ino, offset):
                return int(pid)
    return None


def _covers(fdinfo: str, inode: int, offset: int) -> bool:
    # Lines like "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:2146425 1234 1234".
    for line in fdinfo.splitlines():
        fields = line.split()
        if len(fields) >= 9 and fields[0] == "lock:" and fields[2] == "OFDLCK":
            if not fields[6].endswith(f":{inode}"):
                continue
            start, end = fields[7], fields[8]
            if not start.isdigit() or not (end == "EOF" or end.isdigit()):
                continue  # a format this kernel does not write: no match
            if int(start) <= offset and (end == "EOF" or offset <= int(end)):
                return True
    return False


class Leases(Protocol):
    """What ``SQLiteStore`` asks of its leases (see ``LeaseStore`` in ``protocol``)."""

    blocks: bool
    expires: bool

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool: ...

    def unlock(self, session_id: str, owner: str) -> None: ...

    def is_held(self, session_id: str) -> bool: ...

    def holder(self, session_id: str) -> LeaseHolder | None: ...

    def sql_is_held(self, session_id: object) -> int: ...

    def close(self) -> None: ...


class MemoryLeases:
    """Leases of a private ``":memory:"`` database: a table in this process.

    Thread-safe; never waits on I/O; a lease lasts until ``unlock`` (or ``close``).
    """

    blocks = False
    expires = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take the lease for ``owner`` unless another owner holds it; never waits.

        Raises:
            TypeError, ValueError: a bad ``session_id``, ``owner`` or ``lease``.
        """
        check_lease(session_id, owner, lease)
        with self._lock:
            return self._held.setdefault(session_id, owner) == owner

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the lease back if ``owner`` holds it; otherwise do nothing."""
        check_lease(session_id, owner)
        with self._lock:
            if self._held.get(session_id) == owner:
                del self._held[session_id]

    def is_held(self, session_id: str) -> bool:
        """Whether some owner holds the session's lease now."""
        with self._lock:
            return session_id in self._held

    def holder(self, session_id: str) -> LeaseHolder | None:
        """This process if some owner holds the session's lease, else ``None``."""
        return this_process() if self.is_held(session_id) else None

    def sql_is_held(self, session_id: object) -> int:
        return int(isinstance(session_id, str) and self.is_held(session_id))

    def close(self) -> None:
        with self._lock:
            self._held.clear()


_live_file_leases: weakref.WeakSet[FileLeases] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for leases in list(_live_file_leases):
        leases._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class FileLeases:
    """Leases as open-file-description locks on the side file of one database (Linux).

    One descriptor per instance (opened on first use, with ``O_CLOEXEC``) holds every
    lease this instance has taken, one locked byte per session; owners of this instance
    are told apart by a table. ``try_lock``, ``unlock`` and ``is_held`` make one
    ``fcntl`` call each and never wait. A lease is held until ``unlock``, ``close``, or
    the death of the process; after ``fork()`` the child holds none of them.

    Args:
        database: the database file; the side file is ``lease_path(database)``.
        where: how error messages name the database.

    Raises (every method):
        StoreError: the side file cannot be created or locked (``__cause__`` is the
            ``OSError``).
    """

    blocks = False
    expires = False

    def __init__(self, database: Path, where: str | None = None) -> None:
        self.path = lease_path(database)
        self._where = where or str(database)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._held: dict[str, str] = {}  # session id -> owner
        self._offsets: dict[int, str] = {}  # locked byte -> session id
        self._closed = False
        _live_file_leases.add(self)

    def _descriptor(self) -> int:
        if self._fd is None:
            if self._closed:
                raise StoreError(f"the leases of {self._where} are closed")
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreError(
                    f"cannot open the lease file {self.path} of {self._where}: {exc.strerror}"
                ) from exc
        return self._fd

    def _fcntl(self, command: int, kind: int, offset: int) -> int:
        """Run one ``F_OFD_*`` command on byte ``offset``; return the ``l_type`` back."""
        answer = fcntl.fcntl(
            self._descriptor(), command, _FLOCK.pack(kind, os.SEEK_SET, offset, 1, 0)
        )
        return int(_FLOCK.unpack(answer)[0])

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take the lease for ``owner`` unless another owner anywhere holds it; never waits.

        ``lease`` is checked but not needed: the lease holds until ``unlock`` or until the
        process dies. Taking it again as the same owner returns ``True``.

        Raises:
            TypeError, ValueError: a bad ``session_id``, ``owner`` or ``lease``.
            StoreError: the side file failed.
        """
        check_lease(session_id, owner, lease)
        offset = lease_offset(session_id)
        with self._lock:
            holder = self._held.get(session_id)
            if holder is not None:
                return holder == owner
            if offset in self._offsets:  # another session of ours hashes here: held
                return False
            try:
                self._fcntl(fcntl.F_OFD_SETLK, fcntl.F_WRLCK, offset)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from exc
            self._held[session_id] = owner
            self._offsets[offset] = session_id
            return True

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the lease back if ``owner`` holds it here; otherwise do nothing.

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``owner``.
            StoreError: the side file failed (the lease is then still held).
        """
        check_lease(session_id, owner)
        offset = lease_offset(session_id)
        with self._lock:
            if self._held.get(session_id) != owner:
                return
            if self._fd is not None:
                try:
                    self._fcntl(fcntl.F_OFD_SETLK, fcntl.F_UNLCK, offset)
                except OSError as exc:
                    raise StoreError(f"cannot unlock {self.path}: {exc.strerror}") from exc
            del self._held[session_id]
            del self._offsets[offset]

    def is_held(self, session_id: str) -> bool:
        """Whether some owner (here, in another store, or in another process) holds it.

        Raises:
            StoreError: the side file failed.
        """
        offset = lease_offset(session_id)
        with self._lock:
            if offset in self._offsets:
                return True
            try:
                kind = self._fcntl(fcntl.F_OFD_GETLK, fcntl.F_WRLCK, offset)
            except OSError as exc:
                raise StoreError(f"cannot query {self.path}: {exc.strerror}") from exc
        return kind != fcntl.F_UNLCK

    def holder(self, session_id: str) -> LeaseHolder | None:
        """Who holds the session's lease: ``None`` if nobody; this process if it is held
        here; else the process ``ofd_lock_holder`` finds (an unknown holder if none).

        Costs the holder nothing: it is the asker who reads ``/proc``.

        Raises:
            StoreError: the side file failed.
        """
        if not self.is_held(session_id):
            return None
        offset = lease_offset(session_id)
        with self._lock:
            if offset in self._offsets:
                return this_process()
        pid = ofd_lock_holder(self.path, offset)
        return LeaseHolder() if pid is None else LeaseHolder(pid, this_process().host)

    def sql_is_held(self, session_id: object) -> int:
        """``is_held`` as the SQL function ``agentsession_leased`` (1 or 0)."""
        return int(isinstance(session_id, str) and self.is_held(session_id))

    def close(self) -> None:
        """Give back every lease held here. Later ``try_lock`` calls raise ``StoreError``."""
        with self._lock:
            self._closed = True
            fd, self._fd = self._fd, None
            self._held.clear()
            self._offsets.clear()
        if fd is not None:
            os.close(fd)

    def _forget_parent(self) -> None:
        # In a forked child: the descriptor is the parent's open file description, whose
        # locks the parent still holds. Closing our copy of it leaves them with the parent
        # (and lets them go when the parent dies); the child starts with no lease.
        self._lock = threading.Lock()
        fd, self._fd = self._fd, None
        self._held = {}
        self._offsets = {}
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


class TableLeases:
    """Leases kept in the database's locks table: the fallback where OFD locks are missing.

    Each ``try_lock`` / ``unlock`` is a write transaction; a lease lapses ``lease``
    seconds after it was taken unless renewed, so a dead process blocks others that
    long. Thread- and process-safe through the database's own write lock.

    Args:
        write: runs a callable in one write transaction (``SQLiteStore._write``).
        read: runs a callable on a connection (``SQLiteStore._read``).
    """

    blocks = True
    expires = True

    def __init__(
        self,
        write: Callable[[Callable[[sqlite3.Connection], Any]], Any],
        read: Callable[[Callable[[sqlite3.Connection], Any]], Any],
    ) -> None:
        self._write = write
        self._read = read

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        check_lease(session_id, owner, lease)

        def write(conn: sqlite3.Connection) -> bool:
            now = time.time()
            row = conn.execute(
                f"SELECT owner, expires_at FROM {LOCKS} WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            conn.execute(
                f"INSERT INTO {LOCKS} (session_id, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at",
                (session_id, owner, now + lease),
            )
            return True

        return bool(self._write(write))

    def unlock(self, session_id: str, owner: str) -> None:
        check_lease(session_id, owner)
        self._write(
            lambda conn: conn.execute(
                f"DELETE FROM {LOCKS} WHERE session_id = ? AND owner = ?", (session_id, owner)
            )
        )

    def is_held(self, session_id: str) -> bool:
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT 1 FROM {LOCKS} WHERE session_id = ? AND expires_at > ?",
                (session_id, time.time()),
            ).fetchone()
        )
        return row is not None

    def holder(self, session_id: str) -> LeaseHolder | None:
        """The holder the live lease's owner names (see ``holders.holder_of_owner``)."""
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT owner FROM {LOCKS} WHERE session_id = ? AND expires_at > ?",
                (session_id, time.time()),
            ).fetchone()
        )
        return None if row is None else holder_of_owner(row[0])

    def sql_is_held(self, session_id: object) -> int:
        # NOT_LEASED checks the locks table itself, in the same statement.
        return 0

    def close(self) -> None:
        pass
