"""SQLiteStore: the blocking SQLite session store every SQLite memory is built on.

Thread safety: one ``SQLiteStore`` may be shared by any number of threads (and, through
fork, processes). A file database gives each thread its own connection (WAL mode, so
readers never wait for writers); the private ``":memory:"`` database is one connection
that threads take turns on. Writes run in ``BEGIN IMMEDIATE`` transactions, so writers
from every thread and process queue for the write lock up to ``busy_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from ..._serialize import decode_messages, encode_messages, message_text
from ..._validate import check_limit, check_session_id
from ...exceptions import SchemaError, StoreBusy, StoreClosed, StoreError
from ...window import tool_safe_tail
from ..base import is_user_message
from .history import SQLiteHistoryMixin
from .schema import LOCKS, MESSAGES, SESSIONS, ensure_schema

__all__ = ("SQLiteStore",)

T = TypeVar("T")

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

#: UPSERT ... RETURNING, used by every add, arrived in SQLite 3.35 (2021).
MIN_SQLITE = (3, 35, 0)

# Retried until the busy timeout runs out: SQLite can return SQLITE_BUSY at once, without
# calling the busy handler, when waiting could deadlock (a reader upgrading to a writer)
# or while another connection recovers the WAL.
_RETRY_PAUSE = 0.002


# Writers of this process queue on one lock per database file, taken before BEGIN
# IMMEDIATE and released after COMMIT: SQLite's busy handler, which sleeps 1, 2, 5 ... 100
# ms and favours no one, then only arbitrates between processes. Measured by the W3
# benchmark: p99 per turn from 55-80 ms down to about 7 ms with 8 writer threads.
_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _file_lock(path: Path) -> threading.Lock:
    with _file_locks_guard:
        return _file_locks.setdefault(str(path), threading.Lock())


def _reset_file_locks() -> None:
    # A lock held by another thread at fork() would stay held in the child forever.
    global _file_locks_guard
    _file_locks.clear()
    _file_locks_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_file_locks)


def _session_key(conn: sqlite3.Connection, session_id: str) -> int | None:
    """The sessions row id of ``session_id``, or ``None`` if it has no record."""
    row = conn.execute(f"SELECT id FROM {SESSIONS} WHERE session_id = ?", (session_id,)).fetchone()
    return None if row is None else int(row[0])


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class _Connections:
    """Every connection a store has opened, so that ``close()`` reaches them all.

    A file store opens one connection per thread, kept in a ``threading.local``. When a
    thread ends (anyio worker threads and per-call event loops come and go), its local
    value is dropped and a finalizer closes the connection, so exited threads leak none.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[int, sqlite3.Connection] = {}
        self.finalizers: dict[int, weakref.finalize[[int], object]] = {}
        self.opened_total = 0

    def add(self, owner: object, conn: sqlite3.Connection) -> None:
        key = id(owner)
        with self.lock:
            self.open[key] = conn
            self.finalizers[key] = weakref.finalize(owner, self.discard, key)
            self.opened_total += 1

    def abandon(self) -> None:
        """Stop closing these connections when their threads end (see ``_after_fork``)."""
        with self.lock:
            for finalizer in self.finalizers.values():
                finalizer.detach()
            self.finalizers.clear()

    def discard(self, key: int) -> None:
        with self.lock:
            conn = self.open.pop(key, None)
            self.finalizers.pop(key, None)
        if conn is not None:
            conn.close()

    def close_all(self) -> None:
        with self.lock:
            conns = list(self.open.values())
            self.open.clear()
        for conn in conns:
            conn.close()


class _Holder:
    """A thread's connection; its lifetime is the thread's (see ``_Connections``)."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


class SQLiteStore(SQLiteHistoryMixin):
    """Session messages in one SQLite database file, or in memory.

    Args:
        path: the database file, created (readable by its owner only) if missing, or
            ``":memory:"`` (the default) for a private database that lives as long as
            the store and is shared by all threads using it.
        busy_timeout: seconds a write waits for other writers before raising
            ``StoreBusy``: first for the writers of this process, then for those of
            other processes, so one write can wait up to twice this in all. Also bounds
            the wait for schema set-up.
        synchronous: SQLite's ``PRAGMA synchronous`` for file databases. ``"FULL"``
            (the default) keeps every acknowledged write through a power loss;
            ``"NORMAL"`` keeps them through a crash of the process, and is faster.
        ttl: delete sessions idle for longer than this. Enforced by the writers: at
            most once per tenth of the TTL (at least once a minute) an ``add_messages``
            call, after its own commit, removes the idle sessions in short batches.

    Raises:
        TypeError: ``path`` is not a string or path.
        ValueError: ``busy_timeout`` is not positive, ``synchronous`` is unknown, or
            ``ttl`` is not a positive ``timedelta``.
        SchemaError: the file was written by a newer agentsession.
        StoreError: the file cannot be opened as a SQLite database (the message names
            the path; ``__cause__`` is the ``sqlite3`` error), or the SQLite library is
            older than 3.35.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "FULL",
        ttl: timedelta | None = None,
    ) -> None:
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise ValueError(f"ttl must be a positive timedelta or None, got {ttl!r}")
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)):
            raise TypeError(f"busy_timeout must be a number of seconds, got {busy_timeout!r}")
        if not busy_timeout > 0:
            raise ValueError(f"busy_timeout must be more than 0 seconds, got {busy_timeout!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}"
            )
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"agentsession needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this "
                f"Python's sqlite3 module has SQLite {sqlite3.sqlite_version}"
            )
        text = os.fspath(path)
        if not text:
            raise ValueError("path must name a database file or be ':memory:', got ''")
        self.busy_timeout = float(busy_timeout)
        self.ttl = ttl
        self._next_expiry = 0.0
        self._expiry_lock = threading.Lock()
        self.synchronous = synchronous.upper()
        self.path: Path | None = None if text == ":memory:" else Path(text).absolute()
        self._where = str(self.path) if self.path is not None else ":memory:"
        self._closed = False
        self._pid = os.getpid()
        self._connections = _Connections()
        self._local = threading.local()
        self._shared: sqlite3.Connection | None = None
        self._shared_lock = threading.RLock()
        if self.path is None:
            self._shared = self._open()
            self._connections.add(self, self._shared)
        else:
            self._create_private_file(self.path)
        try:
            with self._connection() as conn, self._mapped():
                ensure_schema(conn, self.path, self.busy_timeout)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({self._where!r})"

    # -- connections ---------------------------------------------------------------------

    @staticmethod
    def _create_private_file(path: Path) -> None:
        # SQLite follows symlinks, so create (privately) the file a symlink points to.
        target = Path(os.path.realpath(path))
        if target.is_dir():
            raise StoreError(f"cannot open {path} as a database: it is a directory")
        if not target.parent.is_dir():
            problem = "is not a folder" if target.parent.exists() else "does not exist"
            raise StoreError(f"cannot create database {path}: {target.parent} {problem}")
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise StoreError(f"cannot create database {path}: {exc.strerror}") from exc
        os.close(fd)

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                ":memory:" if self.path is None else str(self.path),
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self._where}: {exc}") from exc
        try:
            if self.path is not None:
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The calling thread's connection (or the shared one, held exclusively)."""
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        if self._shared is not None:
            with self._shared_lock:
                yield self._shared
            return
        if self._pid != os.getpid():
            self._after_fork()
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is None:
            holder = _Holder(self._open())
            self._connections.add(holder, holder.conn)
            self._local.holder = holder
        yield holder.conn

    def _after_fork(self) -> None:
        # Connections inherited through fork() belong to the parent: SQLite forbids using
        # them in the child, and closing one would drop the POSIX locks the child's own
        # connections hold on the same file. Keep them referenced, never closed, and let
        # each thread open a fresh one.
        with self._shared_lock:
            if self._pid == os.getpid():
                return
            self._connections.abandon()
            self._inherited = self._connections
            self._connections = _Connections()
            self._local = threading.local()
            self._pid = os.getpid()

    @property
    def connection_count(self) -> int:
        """How many connections are open now (one per live thread that used the store)."""
        return len(self._connections.open)

    @property
    def connections_opened(self) -> int:
        """How many connections this store has opened since it was created."""
        return self._connections.opened_total

    def close(self) -> None:
        """Close every connection of every thread. Later calls raise ``StoreClosed``.

        Closing twice is allowed. A ``":memory:"`` database is gone once closed.
        """
        self._closed = True
        with self._shared_lock:
            self._connections.close_all()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- errors and transactions -----------------------------------------------------------

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        if self._closed and isinstance(exc, sqlite3.ProgrammingError):
            return StoreClosed(f"{self!r} is closed")
        if _is_busy(exc):
            return StoreBusy(
                f"database {self._where} stayed locked by another writer for more than "
                f"busy_timeout={self.busy_timeout} s: {exc}"
            )
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return SchemaError(f"{self._where} is not a SQLite database: {exc}")
        return StoreError(f"database {self._where}: {exc}")

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._connection() as conn, self._mapped():
            return work(conn)

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction: all of it or none of it."""
        if self.path is None:  # the shared in-memory connection is already exclusive
            return self._transaction(work)
        lock = _file_lock(self.path)
        if not lock.acquire(timeout=self.busy_timeout):
            raise StoreBusy(
                f"database {self._where} stayed locked by other writers in this process for "
                f"more than busy_timeout={self.busy_timeout} s"
            )
        try:
            return self._transaction(work)
        finally:
            lock.release()

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._connection() as conn, self._mapped():
            deadline = time.monotonic() + self.busy_timeout
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(_RETRY_PAUSE)
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise
            return result

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # A connection that cannot roll back is in an unknown state: drop it so the
            # thread's next call opens a fresh one.
            holder = getattr(self._local, "holder", None)
            if holder is not None and holder.conn is conn:
                del self._local.holder

    # -- the Store API -------------------------------------------------------------------

    def get_messages(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the session's newest ``limit`` messages (all if ``None``), oldest first.

        A window (``limit`` set) is tool-safe: it never holds a tool output whose call was
        cut off, a call without its output, or an item whose reasoning item was cut off,
        so it may hold fewer than ``limit`` messages (see ``agentsession.window``). Reads
        never wait for writers. A stored row that is not valid JSON is skipped with a
        warning on the ``agentsession`` logger.

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``limit``.
            StoreClosed: the store is closed.
            StoreError: the database failed.
        """
        check_session_id(session_id)
        limit = check_limit(limit)
        if limit == 0:
            return []

        def read(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            if limit is None:
                return conn.execute(
                    f"SELECT m.seq, m.message FROM {MESSAGES} m JOIN {SESSIONS} s "
                    "ON m.session = s.id WHERE s.session_id = ? ORDER BY m.seq",
                    (session_id,),
                ).fetchall()
            # One row more than asked for: the item before the window tells whether the
            # window's first item lost its reasoning item (see window.tool_safe_tail).
            rows = conn.execute(
                f"SELECT m.seq, m.message FROM {MESSAGES} m JOIN {SESSIONS} s "
                "ON m.session = s.id WHERE s.session_id = ? ORDER BY m.seq DESC LIMIT ?",
                (session_id, limit + 1),
            ).fetchall()
            rows.reverse()
            return rows

        rows = self._read(read)
        where = f"session {session_id!r}"
        if limit is None:
            return decode_messages(rows, where)
        split = max(0, len(rows) - limit)
        before = decode_messages(rows[:split], where)
        return tool_safe_tail(before + decode_messages(rows[split:], where), len(before))

    def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        """Append ``messages`` to the session in one transaction, keeping their order.

        Every message is encoded before the transaction starts, so bad input stores
        nothing. Writers from other threads and processes queue for up to
        ``busy_timeout`` seconds.

        Raises:
            TypeError: a message is not a JSON object or holds a value JSON cannot
                represent; the message names the item. Nothing is stored.
            ValueError: a bad ``session_id``.
            StoreBusy: the write lock stayed taken past ``busy_timeout``.
            StoreClosed: the store is closed.
            StoreError: the database failed; nothing of this add is stored.
        """
        check_session_id(session_id)
        encoded = encode_messages(messages)
        if not encoded:
            return
        searchable = [message_text(message) for message in messages]
        count = len(encoded)

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            session, last_seq = conn.execute(
                f"INSERT INTO {SESSIONS} "
                "(session_id, created_at, updated_at, message_count, last_seq) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
                "updated_at = excluded.updated_at, "
                "message_count = message_count + excluded.message_count, "
                "last_seq = last_seq + excluded.last_seq RETURNING id, last_seq",
                (session_id, now, now, count, count),
            ).fetchone()
            first = last_seq - count + 1
            conn.executemany(
                f"INSERT INTO {MESSAGES} (session, seq, created_at, message, text) "
                "VALUES (?, ?, ?, ?, ?)",
                [(session, first + i, now, text, searchable[i]) for i, text in enumerate(encoded)],
            )

        self._write(write)
        if self.ttl is not None:
            self._expire_now_and_then(self.ttl)

    def _expire_now_and_then(self, ttl: timedelta) -> None:
        # The time-to-live is enforced by the writers: at most once per tenth of the TTL
        # (and at least once a minute), after its own write has committed, one writer
        # deletes the idle sessions in short batches (see expire_idle).
        now = time.monotonic()
        with self._expiry_lock:
            if now < self._next_expiry:
                return
            self._next_expiry = now + min(ttl.total_seconds() / 10, 60.0)
        self.expire_idle(ttl)

    def pop_message(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return the session's newest message (``None`` if it has none).

        A newest row that is corrupt is removed too, and the next valid one returned.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)

        def write(conn: sqlite3.Connection) -> dict[str, Any] | None:
            while True:
                row = conn.execute(
                    f"SELECT m.id, m.seq, m.message, s.id FROM {MESSAGES} m "
                    f"JOIN {SESSIONS} s ON m.session = s.id WHERE s.session_id = ? "
                    "ORDER BY m.seq DESC LIMIT 1",
                    (session_id,),
                ).fetchone()
                if row is None:
                    return None
                message_id, seq, text, session = row
                conn.execute(f"DELETE FROM {MESSAGES} WHERE id = ?", (message_id,))
                conn.execute(
                    f"UPDATE {SESSIONS} SET message_count = message_count - 1, "
                    "last_seq = ?, updated_at = ? WHERE id = ?",
                    (seq - 1, time.time(), session),
                )
                decoded = decode_messages([(seq, text)], f"session {session_id!r}")
                if decoded:
                    return decoded[0]

        return self._write(write)

    def rewind(self, session_id: str, turns: int = 1) -> list[dict[str, Any]]:
        """Remove the session's last ``turns`` turns whole and return what was removed.

        A turn starts at a user message and runs to the next one, so tool calls, their
        outputs and the replies of a turn go with it. Fewer turns than asked for means
        the whole session is emptied. One transaction: all of it or none of it.

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``turns`` not an int >= 1.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        if isinstance(turns, bool) or not isinstance(turns, int):
            raise TypeError(f"turns must be an int, got {turns!r}")
        if turns < 1:
            raise ValueError(f"turns must be at least 1, got {turns}")

        def write(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            session = _session_key(conn, session_id)
            if session is None:
                return []
            # Walk back from the newest message to the turns-th user message: that is
            # where the turns to remove start (the whole session if there are fewer).
            start, found = 1, 0
            for seq, text in conn.execute(
                f"SELECT seq, message FROM {MESSAGES} WHERE session = ? ORDER BY seq DESC",
                (session,),
            ):
                if is_user_message(decode_messages([(seq, text)], f"session {session_id!r}")):
                    found += 1
                    if found == turns:
                        start = seq
                        break
            return self._cut(conn, session, start)

        removed = self._write(write)
        return decode_messages(removed, f"session {session_id!r}")

    def truncate(self, session_id: str, keep: int) -> list[dict[str, Any]]:
        """Keep the session's oldest ``keep`` messages; remove and return the rest.

        This is what a failed run is rolled back with (see ``RunConfig``): the count
        taken before the run is passed back as ``keep``. One transaction.

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``keep`` not an int >= 0.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        if isinstance(keep, bool) or not isinstance(keep, int):
            raise TypeError(f"keep must be an int, got {keep!r}")
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep}")

        def write(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            session = _session_key(conn, session_id)
            return [] if session is None else self._cut(conn, session, keep + 1)

        removed = self._write(write)
        return decode_messages(removed, f"session {session_id!r}")

    @staticmethod
    def _cut(conn: sqlite3.Connection, session: int, start: int) -> list[tuple[int, str]]:
        """Delete the session's messages from ``start`` (a seq) on; return them in order."""
        removed = conn.execute(
            f"SELECT seq, message FROM {MESSAGES} WHERE session = ? AND seq >= ? ORDER BY seq",
            (session, start),
        ).fetchall()
        if removed:
            conn.execute(f"DELETE FROM {MESSAGES} WHERE session = ? AND seq >= ?", (session, start))
            conn.execute(
                f"UPDATE {SESSIONS} SET message_count = message_count - ?, last_seq = ?, "
                "updated_at = ? WHERE id = ?",
                (len(removed), start - 1, time.time(), session),
            )
        return removed

    def message_count(self, session_id: str) -> int:
        """How many messages the session holds (0 for an unknown session).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT message_count FROM {SESSIONS} WHERE session_id = ?", (session_id,)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take the session's run lease for ``owner`` unless another live owner holds it.

        A lease lasts ``lease`` seconds unless renewed (by calling this again as the same
        owner), so a process that dies holding one blocks others only that long.

        Raises:
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)

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

        return self._write(write)

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the session's run lease back, if ``owner`` still holds it.

        Raises:
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        self._write(
            lambda conn: conn.execute(
                f"DELETE FROM {LOCKS} WHERE session_id = ? AND owner = ?", (session_id, owner)
            )
        )

    def clear_session(self, session_id: str) -> None:
        """Delete the session and all its messages (a no-op for an unknown session).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)

        def write(conn: sqlite3.Connection) -> None:
            session = _session_key(conn, session_id)
            if session is not None:
                conn.execute(f"DELETE FROM {MESSAGES} WHERE session = ?", (session,))
                conn.execute(f"DELETE FROM {SESSIONS} WHERE id = ?", (session,))

        self._write(write)
