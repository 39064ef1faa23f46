"""SQLiteStore: the blocking SQLite session store every SQLite memory is built on.

Thread safety: one ``SQLiteStore`` may be shared by any number of threads (and, through
fork, processes). A file database gives each thread its own connection (WAL mode, so
readers never wait for writers); the private ``":memory:"`` database is one connection
that threads take turns on. Writes run in ``BEGIN IMMEDIATE`` transactions shared by the
writers of one process (group commit, see ``writer``), so writers from every thread and
process queue for the write lock up to ``busy_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

from ...encryption import Encryption
from ...exceptions import SchemaError, StoreBusy, StoreClosed, StoreError
from ...protocol import KeyStore, LeaseHolder, RunRecord, SessionInfo, SessionUsage
from ..base import Progress, Row, StoreBase
from ..encrypted import MemoryKeyStore
from ..history_cache import DEFAULT_LIMIT, HistoryCache, Since
from ..jsonl import ImportedSession
from . import compaction, fts, history, jsonl, ledger, retention
from .base import session_key as _session_key
from .keys import SQLiteKeyFile
from .lease import SQL_FUNCTION, FileLeases, Leases, MemoryLeases, TableLeases
from .lease import ofd_locks_available as _ofd_locks_available
from .schema import ENCRYPTION, MESSAGES, SESSIONS, check_schema, ensure_schema
from .writer import Writer, writer_for

__all__ = ("SQLiteStore", "read_only_uri")

T = TypeVar("T")

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

#: UPSERT ... RETURNING, used by every add, arrived in SQLite 3.35 (2021).
MIN_SQLITE = (3, 35, 0)


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


def read_only_uri(path: Path) -> str:
    """The URI that opens the SQLite file ``path`` for reading only (an absolute path).

    ``mode=ro``; and ``immutable=1`` when the folder cannot be written and no WAL was left
    behind: SQLite could not create the shared-memory file a WAL reader needs, and the
    file itself then holds every committed write.

    Raises:
        StoreError: there is no such file.
    """
    if not path.is_file():
        raise StoreError(f"cannot open database {path} read-only: there is no such file")
    uri = f"{path.as_uri()}?mode=ro"
    if not os.access(path.parent, os.W_OK) and not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    return uri


class SQLiteStore(StoreBase):
    """Session messages in one SQLite database file, or in memory.

    The public methods are ``StoreBase``'s; here are the SQLite specifics. Writes are
    ``BEGIN IMMEDIATE`` transactions, so every atomic step of ``StoreBase`` is one
    transaction (a ``prune`` batch included); the run lease is a lock on one byte of a
    side file (``<db>-leases``, see ``lease``), held until ``unlock`` or the death of the
    process, with no write and no expiry. ``search`` is FTS5 with bm25 ranking; a ``raw``
    query is FTS5 syntax (``"exact phrase"``, ``OR``, ``NOT``, ``prefix*``, ``NEAR(a b)``).
    ``vacuum`` runs ``PRAGMA incremental_vacuum`` if the database was created with
    ``auto_vacuum=INCREMENTAL``, else ``VACUUM`` (which rewrites the whole file and needs
    as much free disk again while it runs), then a ``TRUNCATE`` checkpoint; other
    writers wait meanwhile; a no-op for ``":memory:"``.

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
        encryption: encrypt messages and metadata values (an ``Encryption``; see
            ``docs/encryption.md``). The wrapped data keys go to the key file
            ``<path>.keys`` (an ``SQLiteKeyFile``, created while the database holds no
            session) unless the ``Encryption`` names a key store; a ``":memory:"``
            database keeps them in memory.
        shared_file: let agentsession add its tables to a file that already holds
            another application's tables. Without it such a file is refused (as the
            command line refuses it), so a mistyped path cannot change another
            program's database. A file that has agentsession's tables opens either way.
        read_only: open an existing file for reading only (SQLite's ``mode=ro``): every
            write raises ``StoreError``, nothing is created beside the file, and
            ``search`` finds what the full-text index held (it is not caught up). This
            works in a folder the user cannot write to, where SQLite cannot create the
            WAL's files: a file closed cleanly there is read as it is (``immutable``).
        history_cache: bytes of decoded histories this store keeps for full reads
            (``get_messages(session_id)`` and a run's first read), so that a long
            session's next full read fetches and decodes only the rows added since;
            every read is checked against the database, so what other threads and
            processes changed is always seen (see ``stores.history_cache``). 64 MiB by
            default; 0 turns it off. Not used on an encrypted store.

    Raises:
        TypeError: ``path`` is not a string or path, ``ttl`` not a ``timedelta``,
            ``encryption`` not an ``Encryption``, ``shared_file`` or ``read_only``
            not a bool, or ``history_cache`` not an int.
        ValueError: ``busy_timeout`` is not positive, ``synchronous`` is unknown,
            ``ttl`` is not positive, or ``history_cache`` is negative.
        SchemaError: the file was written by a newer agentsession; or it is encrypted
            and ``encryption`` is not given, or holds plaintext sessions and it is, or
            it holds sessions and its key file is missing; or it holds another
            application's tables and none of agentsession's (without ``shared_file``;
            nothing is added to it).
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
        encryption: Encryption | None = None,
        shared_file: bool = False,
        read_only: bool = False,
        history_cache: int = DEFAULT_LIMIT,
    ) -> None:
        self._set_ttl(ttl)
        if isinstance(history_cache, bool) or not isinstance(history_cache, int):
            raise TypeError(f"history_cache must be a number of bytes, got {history_cache!r:.80}")
        if history_cache < 0:
            raise ValueError(f"history_cache must be 0 or more bytes, got {history_cache!r}")
        for flag, value in (("shared_file", shared_file), ("read_only", read_only)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool, got {value!r:.80}")
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
        self.synchronous = synchronous.upper()
        self.path: Path | None = None if text == ":memory:" else Path(text).absolute()
        self._where = str(self.path) if self.path is not None else ":memory:"
        self.read_only = read_only and self.path is not None
        self._uri = read_only_uri(self.path) if self.read_only and self.path else None
        self._closed = False
        self._has_sessions = False
        self._pid = os.getpid()
        self._connections = _Connections()
        self._local = threading.local()
        self._shared: sqlite3.Connection | None = None
        self._shared_lock = threading.RLock()
        # Group commit (see ``writer``): one writer per file and process, looked up per
        # write (fork gives the child fresh ones); a private one for ":memory:".
        self._memory_writer = Writer(self._where) if self.path is None else None
        self._leases: Leases
        if self.path is None or self.read_only:  # nothing is created beside the file
            self._leases = MemoryLeases()
        elif _ofd_locks_available():
            self._leases = FileLeases(self.path, self._where)
        else:  # no OFD locks (not Linux): leases are rows of the locks table, as before
            self._leases = TableLeases(self._write, self._read)
        self.lease_blocks = self._leases.blocks
        self.lease_expires = self._leases.expires
        if self.path is None:  # one shared connection: a read waits for a running write
            self.reads_block = True
        if self.path is None:
            self._shared = self._open()
            self._connections.add(self, self._shared)
        elif not self.read_only:
            self._create_private_file(self.path)
        try:
            with self._connection() as conn, self._mapped():
                if self.read_only:
                    check_schema(conn, self._where)
                else:
                    ensure_schema(conn, self.path, self.busy_timeout, shared_file)
            self._set_encryption(encryption, self._default_key_store, self._where)
            if history_cache and self._encrypted is None:
                self._history_cache = HistoryCache(history_cache)
        except BaseException:
            self.close()
            raise

    def _default_key_store(self) -> KeyStore:
        if self.path is None:
            return MemoryKeyStore()
        # A database that holds sessions needs its key file: never start an empty one.
        path = self.path.with_name(self.path.name + ".keys")
        return SQLiteKeyFile(path, create=not self._has_sessions)

    def _check_encrypted(self, encrypted: bool) -> None:
        def check(conn: sqlite3.Connection) -> None:
            marked, used = conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM {ENCRYPTION}), EXISTS (SELECT 1 FROM {SESSIONS})"
            ).fetchone()
            self._has_sessions = bool(used)
            if marked and not encrypted:
                raise SchemaError(
                    f"{self._where} is encrypted: open it with encryption=Encryption(key)"
                )
            if encrypted and not marked:
                if used:
                    raise SchemaError(
                        f"{self._where} holds sessions stored in plaintext: it cannot be "
                        "opened with encryption= (export it, then import the file into a "
                        "new store opened with encryption=)"
                    )
                conn.execute(
                    f"INSERT OR IGNORE INTO {ENCRYPTION} (id, since) VALUES (1, ?)",
                    (time.time(),),
                )

        if encrypted:
            self._write(check)
        else:
            self._read(check)

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
                self._uri or (":memory:" if self.path is None else str(self.path)),
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=self._uri is not None,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self._where}: {exc}") from exc
        try:
            if self.path is not None:
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
            # Prune and TTL skip the sessions a run holds (lease.NOT_LEASED).
            conn.create_function(SQL_FUNCTION, 1, self._leases.sql_is_held, deterministic=False)
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
        self._leases.close()
        if self._history_cache is not None:
            self._history_cache.clear()

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

    def _writer(self) -> Writer:
        if self._memory_writer is not None:
            return self._memory_writer
        assert self.path is not None
        return writer_for(self.path, self.synchronous, self._where)

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a committed ``BEGIN IMMEDIATE`` transaction: all of it or none.

        Group commit (see ``writer``): the transaction may hold other threads' works too,
        each in its own savepoint; this returns once it has committed.
        """
        return self._transaction(work)

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        if self.read_only:
            raise StoreError(f"database {self._where} is open read-only: it cannot be written")
        with self._mapped():
            return self._writer().write(
                work,
                connect=self._connection,
                timeout=self.busy_timeout,
                busy_timeout_ms=int(self.busy_timeout * 1000),
                discard=self._discard,
            )

    def _discard(self, conn: sqlite3.Connection) -> None:
        # A connection that cannot roll back is in an unknown state: drop it so the
        # thread's next call opens a fresh one.
        holder = getattr(self._local, "holder", None)
        if holder is not None and holder.conn is conn:
            del self._local.holder

    # -- the hooks of StoreBase: messages ----------------------------------------------------

    #: The run lease is an OFD lock on a side file: no write, no expiry (see ``lease``).
    #: Where OFD locks are missing, the instance says True to both (the locks table).
    lease_blocks = False
    lease_expires = False
    #: WAL readers never wait for writers: a read costs its CPU and nothing else, which
    #: under the GIL blocks the event loop as much in a worker thread as on the loop, and
    #: the hop there and back costs about as much again (see ``StoreMemory.get_messages``).
    reads_block = False

    def _all_rows(self, session_id: str) -> list[Row]:
        return self._read(
            lambda conn: conn.execute(
                f"SELECT m.seq, m.message FROM {MESSAGES} m JOIN {SESSIONS} s "
                "ON m.session = s.id WHERE s.session_id = ? ORDER BY m.seq",
                (session_id,),
            ).fetchall()
        )

    def _rows_since(self, session_id: str, after: Any) -> Since:
        # One statement, so one snapshot: the mark, the count and the rows agree.
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT s.id, s.generation, s.message_count, m.seq, m.message "
                f"FROM {SESSIONS} s LEFT JOIN {MESSAGES} m ON m.session = s.id AND m.seq > ? "
                "WHERE s.session_id = ? ORDER BY m.seq",
                (after, session_id),
            ).fetchall()
        )
        if not rows:
            return Since(None, 0, [])
        key, generation, count, seq, _ = rows[0]
        found = [] if seq is None else [(row[3], row[4]) for row in rows]
        return Since((key, generation), count, found)

    def _newest_rows(self, session_id: str, count: int) -> list[Row]:
        return self._read(
            lambda conn: conn.execute(
                f"SELECT m.seq, m.message FROM {MESSAGES} m JOIN {SESSIONS} s "
                "ON m.session = s.id WHERE s.session_id = ? ORDER BY m.seq DESC LIMIT ?",
                (session_id, count),
            ).fetchall()
        )

    def _append(self, session_id: str, encoded: list[str], messages: list[Any]) -> None:
        self._write(self._append_work(session_id, encoded))

    def _append_run(
        self, session_id: str, encoded: list[str], messages: list[Any], run: RunRecord
    ) -> None:
        # The run's record joins its items' transaction: no extra commit per run.
        append = self._append_work(session_id, encoded) if encoded else None

        def write(conn: sqlite3.Connection) -> None:
            if append is not None:
                append(conn)
            ledger.insert(conn, [run])

        self._write(write)

    @staticmethod
    def _append_work(session_id: str, encoded: list[str]) -> Callable[[sqlite3.Connection], None]:
        # The searchable text is computed, and indexed, by fts.catch_up before a search.
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
                f"INSERT INTO {MESSAGES} (session, seq, created_at, message) VALUES (?, ?, ?, ?)",
                [(session, first + i, now, text) for i, text in enumerate(encoded)],
            )

        return write

    def _pop(self, session_id: str) -> Row | None:
        def write(conn: sqlite3.Connection) -> Row | None:
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
            return seq, text

        return self._write(write)

    def _cut_turns(self, session_id: str, turns_start: Callable[[Iterable[Row]], Any]) -> list[Row]:
        def write(conn: sqlite3.Connection) -> list[Row]:
            session = _session_key(conn, session_id)
            if session is None:
                return []
            newest_first = conn.execute(
                f"SELECT seq, message FROM {MESSAGES} WHERE session = ? ORDER BY seq DESC",
                (session,),
            )
            start = turns_start(newest_first)
            return self._cut_rows(conn, session, 1 if start is None else int(start))

        return self._write(write)

    def _cut(self, session_id: str, keep: int) -> list[Row]:
        def write(conn: sqlite3.Connection) -> list[Row]:
            session = _session_key(conn, session_id)
            return [] if session is None else self._cut_rows(conn, session, keep + 1)

        return self._write(write)

    @staticmethod
    def _cut_rows(conn: sqlite3.Connection, session: int, start: int) -> list[Row]:
        """Delete the session's messages from ``start`` (a seq) on; return them in order."""
        removed: list[Row] = conn.execute(
            f"SELECT seq, message FROM {MESSAGES} WHERE session = ? AND seq >= ? ORDER BY seq",
            (session, start),
        ).fetchall()
        if removed:
            conn.execute(
                f"DELETE FROM {MESSAGES} WHERE session = ? AND seq >= ?",
                (session, start),
            )
            conn.execute(
                f"UPDATE {SESSIONS} SET message_count = message_count - ?, last_seq = ?, "
                "updated_at = ? WHERE id = ?",
                (len(removed), start - 1, time.time(), session),
            )
        return removed

    def _count(self, session_id: str) -> int:
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT message_count FROM {SESSIONS} WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    def _clear(self, session_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            session = _session_key(conn, session_id)
            if session is not None:
                compaction.delete_session_key(conn, session)
                conn.execute(f"DELETE FROM {MESSAGES} WHERE session = ?", (session,))
                conn.execute(f"DELETE FROM {SESSIONS} WHERE id = ?", (session,))
            ledger.delete(conn, session_id)

        self._write(write)

    # -- the hooks of StoreBase: compaction (the work is in ``compaction``) -----------------

    def _compact(self, session_id: str, cut: int, summary: str, record: str) -> None:
        self._write(lambda conn: compaction.compact(conn, session_id, cut, summary, record))

    def _uncompact(self, session_id: str) -> tuple[str, Row] | None:
        return self._write(lambda conn: compaction.uncompact(conn, session_id))

    def _archive(self, session_id: str) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
        def read(conn: sqlite3.Connection) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
            conn.execute("BEGIN")  # one snapshot for the messages and the archive
            try:
                return compaction.archive(conn, session_id)
            finally:
                conn.execute("COMMIT")

        return self._read(read)

    def _compaction_records(self, session_id: str) -> list[tuple[str, Row]]:
        return self._read(lambda conn: compaction.records(conn, session_id))

    # -- the hooks of StoreBase: the usage ledger (the work is in ``ledger``) ---------------

    def _usage(self, session_id: str) -> SessionUsage:
        return self._read(lambda conn: ledger.usage(conn, session_id))

    def _runs(self, session_id: str, limit: int) -> list[RunRecord]:
        return self._read(lambda conn: ledger.runs(conn, session_id, limit))

    def _usage_by_session(self, limit: int | None) -> list[tuple[str, SessionUsage]]:
        return self._read(lambda conn: ledger.usage_by_session(conn, limit))

    def _lock(self, session_id: str, owner: str, lease: float) -> bool:
        # An OFD lock on the side file (see ``lease``): no write, never waits, released by
        # the kernel if this process dies. ``lease`` matters only to the table fallback.
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        return self._leases.try_lock(session_id, owner, lease)

    def _unlock(self, session_id: str, owner: str) -> None:
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        self._leases.unlock(session_id, owner)

    def _lease_holder(self, session_id: str) -> LeaseHolder | None:
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        return self._leases.holder(session_id)

    # -- the hooks of StoreBase: history (the work is in ``history``) ------------------------

    def _sessions(
        self, wanted: dict[str, Any], after: tuple[float, Any] | None, limit: int | None
    ) -> list[tuple[SessionInfo, float, Any]]:
        return list(self._read(lambda conn: history.sessions(conn, wanted, after, limit)))

    def _info(self, session_id: str) -> SessionInfo | None:
        return self._read(lambda conn: history.session_info(conn, session_id))

    def _put_metadata(self, session_id: str, text: str) -> None:
        self._write(lambda conn: history.put_metadata(conn, session_id, text))

    def _update_metadata(
        self, session_id: str, changes: dict[str, Any], remove: list[str]
    ) -> dict[str, Any]:
        return self._write(lambda conn: history.update_metadata(conn, session_id, changes, remove))

    def _search(
        self,
        query: str,
        session_id: str | None,
        limit: int,
        raw: bool,
        highlight: tuple[str, str],
    ) -> list[tuple[str, int, str, str, float]]:
        if not self.read_only:
            fts.catch_up(self._read, self._write)
        return self._read(
            lambda conn: history.search(conn, query, session_id, limit, raw, highlight)
        )

    def _fork(self, session_id: str, new_session_id: str, at: int | None) -> int:
        return self._write(lambda conn: history.fork(conn, session_id, new_session_id, at))

    # -- the hooks of StoreBase: retention (the work is in ``retention``) --------------------

    def _prune(
        self,
        cutoff: float | None,
        keep_last: int | None,
        batch: int,
        dry_run: bool,
        progress: Progress | None,
    ) -> int:
        if dry_run:
            return self._read(lambda conn: retention.count(conn, cutoff, keep_last))
        removed = 0
        if cutoff is not None:
            idle = cutoff
            removed += self._batches(
                lambda conn: retention.delete_idle(conn, idle, batch)[0], progress
            )
        if keep_last is not None:
            kept = keep_last
            removed += self._batches(lambda conn: retention.trim(conn, kept, batch), progress)
        if removed:
            self.checkpoint()
        return removed

    def _expire_idle(self, cutoff: float, batch: int) -> int:
        sessions = 0
        while True:
            _, gone, more = self._write(lambda conn: retention.delete_idle(conn, cutoff, batch))
            sessions += gone
            if not more:
                break
        if sessions:
            self.checkpoint()
        return sessions

    def _batches(
        self,
        step: Callable[[sqlite3.Connection], int | None],
        progress: Progress | None,
    ) -> int:
        """Run ``step`` in one write transaction after another until it returns ``None``."""
        total = 0
        while (removed := self._write(step)) is not None:
            total += removed
            if progress is not None and removed:
                progress(removed)
        return total

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy the write-ahead log into the database file (file databases only).

        ``"PASSIVE"`` never waits; ``"TRUNCATE"`` waits for readers (up to the busy
        timeout) and then empties the ``-wal`` file, giving its space back.

        Raises:
            ValueError: an unknown ``mode``.
            StoreClosed, StoreError: the store is closed or the database failed.
        """
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"mode must be PASSIVE, FULL, RESTART or TRUNCATE, got {mode!r}")
        if self.path is not None:
            self._read(lambda conn: conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall())

    def _vacuum(self) -> None:
        if self.path is None:
            if self._closed:
                raise StoreClosed(f"{self!r} is closed")
            return
        if self.read_only:
            raise StoreError(f"database {self._where} is open read-only: it cannot be written")
        fts.catch_up(self._read, self._write)
        # This process's writers wait, as for _write, while VACUUM runs without a
        # transaction of ours.
        with self._writer().exclusive():
            self._read(retention.vacuum)

    # -- the hooks of JsonlMixin (the work is in ``jsonl``) ----------------------------------

    def _jsonl_session_ids(self) -> Iterator[str]:
        after = 0
        while True:
            rows = self._read(functools.partial(jsonl.id_page, after=after))
            for _, session_id in rows:
                yield session_id
            if len(rows) < jsonl.PAGE:
                return
            after = rows[-1][0]

    def _jsonl_missing(self, session_ids: list[str]) -> list[str]:
        return self._read(lambda conn: jsonl.missing(conn, session_ids))

    def _jsonl_export_one(self, session_id: str, fp: IO[str]) -> bool:
        return self._read(lambda conn: jsonl.export_one(conn, session_id, fp))

    def _jsonl_store(self, session: ImportedSession, on_conflict: str) -> bool:
        return self._write(lambda conn: jsonl.store_session(conn, session, on_conflict))
