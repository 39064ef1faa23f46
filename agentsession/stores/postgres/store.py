"""PostgresStore: the blocking PostgreSQL session store that many app servers share.

Thread safety: one ``PostgresStore`` may be shared by any number of threads. Each call
borrows a connection from a ``psycopg_pool.ConnectionPool`` for its duration and gives it
back; a call waits up to ``pool_timeout`` seconds for a free connection, then raises
``StoreBusy``. Every app server process opens its own store (its own pool); all of them
may write to the same sessions at once.

Order across hosts: every write to a session locks that session's row first (an
``add_messages`` does it with the upsert that also reserves its positions), so
concurrent writers of one session, on any host, queue on the row lock and each batch is
stored whole, in order, after the ones that committed before it. Every time stored comes
from the server's clock, so hosts with skewed clocks still agree on "last active".

Fork: a store that made its own pool opens a new one in a forked child on first use (the
child never touches the parent's connections). A store given the caller's pool cannot do
that, and raises ``StoreError`` in the child.

Errors: caller mistakes raise ``TypeError`` / ``ValueError`` before any SQL runs; driver
failures raise ``StoreError`` (``StoreBusy``, ``StoreClosed``, ``SchemaError``) with the
psycopg error as ``__cause__``. Messages name the server, never the password. A read
that finds its pooled connection dead (a server restart, a failover) is tried once more
on a fresh one; a write is not, since its commit may have happened: it raises.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import IO, Any, TypeVar

from ..._extras import require

try:
    import psycopg
    from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout, TooManyRequests
except ImportError:
    require("psycopg", "postgres", "PostgresStore")
    require("psycopg_pool", "postgres", "PostgresStore")
    raise

from ..._serialize import message_text
from ...encryption import Encryption
from ...exceptions import SchemaError, StoreBusy, StoreClosed, StoreError
from ...protocol import KeyStore, LeaseHolder, RunRecord, SessionInfo, SessionUsage
from ..base import Progress, Row, StoreBase, check_count, load_metadata
from ..holders import this_process
from ..jsonl import ImportedSession
from . import compaction, history, jsonl, ledger, retention
from .base import MAX_ROWS, NOW, Conn, db_id, metadata_for_db, metadata_from_db, searchable
from .keys import PostgresKeyTable
from .lease import HOLDER_SQL, AdvisoryLeases, application_name, holder_of_backend
from .schema import Tables, check_schema_name, ensure_schema

__all__ = ("PostgresStore",)

T = TypeVar("T")

#: Errors that mean "try again later": lock or statement timeouts, deadlocks, and
#: serialization failures (under a stricter isolation level than READ COMMITTED).
_BUSY = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.QueryCanceled,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)
#: Errors that mean our tables are not there (or not as this code made them).
_MISSING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.InvalidSchemaName,
)

#: Rows read at a time when walking a session back from its newest message.
_PAGE = 200

#: Positions are PostgreSQL integers: no session holds more messages than this.
_MAX_SEQ = 2**31 - 1

# Taken to swap a store's pool after fork(); replaced in the child, where a lock some
# other thread of the parent held at fork() would stay held forever.
_fork_guard = threading.Lock()


def _reset_fork_guard() -> None:
    global _fork_guard
    _fork_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_fork_guard)


_PASSWORD_WORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_PASSWORD_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _masked(text: str, password: str | None = None) -> str:
    """``text`` with any password in it (known, or in conninfo syntax) replaced by ***."""
    if password:
        text = text.replace(password, "***")
    text = _PASSWORD_WORD.sub(r"\1***", text)
    return _PASSWORD_URL.sub(r"\1***@", text)


def _server_of(conninfo: str) -> tuple[str, str | None]:
    """``(postgresql://user:***@host:port/dbname, password)`` of a libpq conninfo or URL.

    The description names the user, and masks the password as ``***`` when there is one.

    Raises:
        ValueError: libpq cannot parse ``conninfo`` (the message masks passwords).
    """
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise ValueError(
            f"conninfo is not a libpq connection string or URL: {_masked(str(exc))}"
        ) from None
    user = params.get("user") or os.environ.get("PGUSER")
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user or ""
    password = params.get("password")
    at = f"{user or ''}{':***' if password is not None else ''}@" if user or password else ""
    return (
        f"postgresql://{at}{host}:{port}/{dbname}",
        None if password is None else str(password),
    )


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be more than 0 seconds, got {value!r}")
    return float(value)


class PostgresStore(StoreBase):
    """Session messages in PostgreSQL: one schema of tables, shared by every app server.

    The public methods are ``StoreBase``'s; here are the PostgreSQL specifics. Every
    atomic step is one statement or one transaction holding the session's row lock;
    every time stored (and the clock of ``prune`` / ``expire_idle``) is the server's.
    Metadata is ``jsonb``, so it comes back with its keys in jsonb's order. ``search`` is
    PostgreSQL's full-text search with the ``simple`` configuration (``rank``: the
    negated ``ts_rank_cd``; only the first 256 KiB of a message's text is indexed); a
    ``raw`` query is ``to_tsquery`` syntax (``&``, ``|``, ``!``, ``<->``, ``'a phrase'``,
    ``prefix:*``). ``prune`` and ``expire_idle`` skip sessions a writer holds right now.
    ``vacuum`` runs ``VACUUM (ANALYZE)`` on the tables: readers and writers go on, and
    the space is kept for the tables' next rows (a role that does not own the tables
    gets PostgreSQL's warning and nothing done).

    The tables (``agentsession_sessions``, ``agentsession_messages``,
    ``agentsession_locks``, ``agentsession_migrations``) are created in ``schema`` on
    first use, under an advisory lock, so many servers may start at once (see
    ``stores.postgres.schema``). The database must be UTF8.

    Args:
        conninfo: a libpq connection string or URL (``"postgresql://app@db/app"``); the
            store opens its own ``ConnectionPool`` of ``min_size``..``max_size``
            connections and closes it in ``close()``. Or a ``psycopg_pool.ConnectionPool``
            of your own, already open: the store borrows its connections (the sizes are
            then the pool's) and ``close()`` leaves it open. Its connections may be in
            autocommit mode or not; the READ COMMITTED isolation level is assumed.
            Statements are prepared on each connection after a few uses (psycopg's
            default); behind PgBouncer in transaction mode, give a pool whose
            connections have ``prepare_threshold=None`` (and see ``lease``: the run
            leases are session-level advisory locks, which need session mode).
        schema: the PostgreSQL schema holding the tables (created if missing): a plain
            identifier, used quoted (case is kept).
        min_size: connections the store's own pool keeps open (0 or more).
        max_size: the most connections the store's own pool opens (1 or more).
        pool_timeout: seconds a call waits for a free connection before ``StoreBusy``;
            also bounds connecting and the wait for another server's schema set-up.
        ttl: delete sessions idle for longer than this. Enforced by the writers: at
            most once per tenth of the TTL (at least once a minute) an ``add_messages``
            call, after its own commit, removes the idle sessions in short batches.
        encryption: encrypt messages and metadata values (an ``Encryption``; see
            ``docs/encryption.md``). The wrapped data keys go to the schema's
            ``agentsession_keys`` table unless the ``Encryption`` names a key store
            (a ``PostgresKeyTable`` in another schema or on another server, say).

    Raises:
        MissingDependencyError: ``psycopg`` / ``psycopg_pool`` are not installed (at
            import; the message has the ``pip install`` command).
        TypeError: an argument of the wrong type (``bool`` is not a number).
        ValueError: a bad schema name, size or timeout, or a ``conninfo`` libpq cannot
            parse.
        SchemaError: the schema was set up by a newer agentsession, the database is not
            UTF8, or the schema cannot be set up (permissions, lock timeout); or it is
            encrypted and ``encryption`` is not given, or holds plaintext sessions and
            it is.
        StoreError: the server cannot be reached: the message names the host and
            database (never the password); ``__cause__`` is the psycopg error.
    """

    def __init__(
        self,
        conninfo: str | ConnectionPool,
        *,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = 10,
        pool_timeout: float = 30.0,
        ttl: timedelta | None = None,
        encryption: Encryption | None = None,
    ) -> None:
        if not isinstance(conninfo, (str, ConnectionPool)):
            raise TypeError(
                "conninfo must be a connection string or a psycopg_pool.ConnectionPool, "
                f"not {type(conninfo).__name__}"
            )
        self._set_ttl(ttl)
        self._tables = Tables(check_schema_name(schema))
        self.min_size = check_count(min_size, "min_size", minimum=0)
        self.max_size = check_count(max_size, "max_size", minimum=max(1, min_size))
        self.pool_timeout = _check_number(pool_timeout, "pool_timeout")
        self.schema = schema
        self._closed = False
        self._pid = os.getpid()
        #: Pools inherited through fork(): kept, never used or closed (see _after_fork).
        self._inherited: list[ConnectionPool] = []
        self._owns_pool = isinstance(conninfo, str)
        self._leases = AdvisoryLeases(self._lease_connection, schema)
        if isinstance(conninfo, ConnectionPool):
            self._pool = conninfo
            self._conninfo = ""
            if isinstance(conninfo.conninfo, str):
                self._server, self._password = _server_of(conninfo.conninfo)
            else:  # the pool computes its conninfo when it connects
                self._server, self._password = f"pool {conninfo.name!r}", None
            self._where = f"{self._server} (schema {schema!r})"
            with self._connection() as conn:
                ensure_schema(conn, self._tables, self.pool_timeout)
        else:
            self._conninfo = conninfo
            self._server, self._password = _server_of(conninfo)
            self._where = f"{self._server} (schema {schema!r})"
            self._set_up()
            self._pool = self._open_pool()
        try:
            self._set_encryption(encryption, self._default_key_store, self._where)
        except BaseException:
            self.close()
            raise

    def _default_key_store(self) -> KeyStore:
        return PostgresKeyTable.on_store(self._run, self._tables.keys, self._where)

    def _check_encrypted(self, encrypted: bool) -> None:
        t = self._tables

        def check(conn: Conn) -> None:
            row = conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM {t.encryption}), EXISTS (SELECT 1 FROM {t.sessions})"
            ).fetchone()
            marked, used = row if row is not None else (False, False)
            if marked and not encrypted:
                raise SchemaError(
                    f"{self._where} is encrypted: open it with encryption=Encryption(key)"
                )
            if encrypted and not marked:
                if used:
                    raise SchemaError(
                        f"{self._where} holds sessions stored in plaintext: it cannot be "
                        "opened with encryption= (export it, then import the file into a "
                        "new schema opened with encryption=)"
                    )
                conn.execute(
                    f"INSERT INTO {t.encryption} (id, since) VALUES (1, {NOW}) "
                    "ON CONFLICT (id) DO NOTHING"
                )

        self._run(check)

    def __repr__(self) -> str:
        return f"PostgresStore({self._server!r}, schema={self.schema!r})"

    # -- connections ---------------------------------------------------------------------

    def _set_up(self) -> None:
        """Connect once, directly, to report a failure precisely; set the schema up."""
        extra: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(self._conninfo):
            extra["connect_timeout"] = max(2, math.ceil(self.pool_timeout))
        try:
            conn = psycopg.connect(self._conninfo, **extra)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self._server}: "
                f"{_masked(str(exc).strip(), self._password)}"
            ) from exc
        try:
            with conn:
                ensure_schema(conn, self._tables, self.pool_timeout)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _open_pool(self) -> ConnectionPool:
        pool: ConnectionPool = ConnectionPool(
            self._conninfo,
            min_size=self.min_size,
            max_size=self.max_size,
            timeout=self.pool_timeout,
            # One statement is one transaction: the hot paths (an add, a window read)
            # are one round trip each. Multi-statement work opens a transaction.
            kwargs={"autocommit": True},
            name=f"agentsession-{self.schema}",
            open=True,
        )
        try:
            pool.wait(timeout=self.pool_timeout)
        except PoolTimeout as exc:
            pool.close()
            raise StoreError(
                f"cannot connect to PostgreSQL at {self._server}: the pool did not get "
                f"min_size={self.min_size} connections within pool_timeout="
                f"{self.pool_timeout} s"
            ) from exc
        return pool

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Conn]:
        """A pooled connection for one call; psycopg errors come out as ``StoreError``."""
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        if self._pid != os.getpid():
            self._after_fork()
        try:
            with self._pool.connection(timeout=self.pool_timeout) as conn:
                yield conn
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _after_fork(self) -> None:
        # The parent's pooled connections share their sockets with the parent: using or
        # closing one here would break the parent's sessions. Keep the inherited pool
        # referenced (never closed; psycopg does not close connections of another
        # process when they are collected) and open a fresh pool for this process.
        with _fork_guard:
            if self._pid == os.getpid():
                return
            if not self._owns_pool:
                raise StoreError(
                    f"{self!r} uses a connection pool made in process {self._pid}, and this "
                    f"is process {os.getpid()}, forked from it: pooled connections cannot "
                    "cross fork(). Make the pool (or the store) in each process after the "
                    "fork, or pass a conninfo string so the store opens its own pool there."
                )
            pool = self._open_pool()
            self._inherited.append(self._pool)
            self._pool = pool
            self._expiry_lock = threading.Lock()
            self._pid = os.getpid()

    @property
    def pool(self) -> ConnectionPool:
        """The connection pool the store borrows connections from."""
        return self._pool

    def close(self) -> None:
        """Close the store's own pool (not a pool it was given). Later calls raise
        ``StoreClosed``.

        Closing twice is allowed. Connections in use by other threads are closed as
        they come back. In a forked child the parent's pool is left alone.
        """
        self._closed = True
        self._leases.close()
        if self._owns_pool and self._pid == os.getpid():
            self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- errors and transactions -----------------------------------------------------------

    def _translate(self, exc: Exception) -> StoreError:
        text = _masked(str(exc).strip(), self._password)
        if isinstance(exc, PoolTimeout):
            return StoreBusy(
                f"no free connection to {self._where} within pool_timeout="
                f"{self.pool_timeout} s (the pool has at most {self._pool.max_size})"
            )
        if isinstance(exc, PoolClosed):
            if self._closed:
                return StoreClosed(f"{self!r} is closed")
            return StoreError(f"the connection pool of {self._where} was closed by its owner")
        if isinstance(exc, TooManyRequests):
            return StoreBusy(f"too many calls waiting for a connection to {self._where}: {text}")
        if isinstance(exc, _BUSY):
            return StoreBusy(f"{self._where} stayed busy: {text}")
        if isinstance(exc, _MISSING):
            return SchemaError(
                f"agentsession's tables are missing or changed in {self._where} (was the "
                f"schema dropped or altered while in use?): {text}"
            )
        if isinstance(exc, psycopg.OperationalError):
            return StoreError(f"PostgreSQL server {self._server} failed: {text}")
        return StoreError(f"PostgreSQL {self._where}: {text}")

    def _run(self, work: Callable[[Conn], T]) -> T:
        """Run ``work`` on a pooled connection: a read, or a single-statement write."""
        with self._connection() as conn:
            return work(conn)

    def _read(self, work: Callable[[Conn], T]) -> T:
        """Run a read; once more, on a fresh connection, if the pooled one was dead.

        Pooled connections die with a server restart, a failover or a network timeout,
        and the pool only finds out when one is used. A read is safe to repeat; a write
        is not (its commit may have happened), so writes report the failure instead.
        """
        try:
            return self._run(work)
        except StoreError as exc:
            cause = exc.__cause__
            if type(exc) is not StoreError or not isinstance(cause, psycopg.OperationalError):
                raise
            if isinstance(cause, (PoolTimeout, PoolClosed, TooManyRequests)):
                raise
        return self._run(work)

    def _write(self, work: Callable[[Conn], T]) -> T:
        """Run ``work`` in one transaction: all of it or none of it."""
        with self._connection() as conn, conn.transaction():
            return work(conn)

    def _server_time(self) -> float:
        row = self._read(lambda conn: conn.execute(f"SELECT {NOW}").fetchone())
        assert row is not None
        return float(row[0])

    def _lock_session(self, conn: Conn, key: str) -> int | None:
        """Lock the session's row for this transaction; its id, or None if it has none."""
        row = conn.execute(
            f"SELECT id FROM {self._tables.sessions} WHERE session_id = %s FOR UPDATE",
            (key,),
        ).fetchone()
        return None if row is None else int(row[0])

    # -- the hooks of StoreBase: messages ----------------------------------------------------

    #: The run lease is a session-level advisory lock (a round trip, no write), held until
    #: ``unlock`` or until this process's lease connection closes (see ``lease``).
    lease_blocks = True
    lease_expires = False

    def _clock(self) -> float:
        return self._server_time()

    def _all_rows(self, session_id: str) -> list[Row]:
        t = self._tables
        query = (
            f"SELECT seq, message FROM {t.messages} WHERE session = "
            f"(SELECT id FROM {t.sessions} WHERE session_id = %s) ORDER BY seq"
        )
        key = db_id(session_id)
        return self._read(lambda conn: conn.execute(query, (key,)).fetchall())

    def _newest_rows(self, session_id: str, count: int) -> list[Row]:
        # One statement, an index range scan however long the session.
        t = self._tables
        query = (
            f"SELECT seq, message FROM {t.messages} WHERE session = "
            f"(SELECT id FROM {t.sessions} WHERE session_id = %s) ORDER BY seq DESC LIMIT %s"
        )
        params = (db_id(session_id), min(count, MAX_ROWS))
        return self._read(lambda conn: conn.execute(query, params).fetchall())

    def _append(self, session_id: str, encoded: list[str], messages: list[Any]) -> None:
        query, params = self._append_statement(session_id, encoded, messages)
        self._run(lambda conn: conn.execute(query, params))

    def _append_run(
        self, session_id: str, encoded: list[str], messages: list[Any], run: RunRecord
    ) -> None:
        # The run's record rides in the add's one statement, as one more data-modifying
        # WITH clause: no extra statement or round trip per run.
        insert = ledger.insert_sql(self._tables)
        record = ledger.params(run)
        if not encoded:
            self._run(lambda conn: conn.execute(insert, record))
            return
        query, params = self._append_statement(session_id, encoded, messages)
        query = f"WITH r AS ({insert}), {query.removeprefix('WITH ')}"
        params.update(record)
        self._run(lambda conn: conn.execute(query, params))

    def _append_statement(
        self, session_id: str, encoded: list[str], messages: list[Any]
    ) -> tuple[str, dict[str, Any]]:
        # One statement: an upsert of the session's row (which locks it until commit, so
        # concurrent adds to one session from any host queue there, and reserves the
        # positions) and the insert of the messages at those positions.
        texts = [searchable(message_text(message)) for message in messages]
        t = self._tables
        query = (
            f"WITH s AS (INSERT INTO {t.sessions} AS t "
            "(session_id, created_at, updated_at, message_count, last_seq) "
            f"SELECT %(key)s, n.now, n.now, %(count)s, %(count)s FROM (SELECT {NOW} AS now) n "
            "ON CONFLICT (session_id) DO UPDATE SET "
            f"updated_at = greatest(t.updated_at, {NOW}), "
            "message_count = t.message_count + excluded.message_count, "
            "last_seq = t.last_seq + excluded.last_seq RETURNING id, last_seq, updated_at) "
            f"INSERT INTO {t.messages} (session, seq, created_at, message, search_text) "
            "SELECT s.id, s.last_seq - %(count)s + m.n, s.updated_at, m.message, m.text "
            "FROM s, unnest(%(messages)s::text[], %(texts)s::text[]) "
            "WITH ORDINALITY AS m(message, text, n)"
        )
        params: dict[str, Any] = {
            "key": db_id(session_id),
            "count": len(encoded),
            "messages": encoded,
            "texts": texts,
        }
        return query, params

    def _pop(self, session_id: str) -> Row | None:
        key = db_id(session_id)
        t = self._tables
        query = (
            f"WITH d AS (DELETE FROM {t.messages} WHERE session = %(id)s AND seq = "
            f"(SELECT max(seq) FROM {t.messages} WHERE session = %(id)s) RETURNING seq, message) "
            f"UPDATE {t.sessions} SET message_count = message_count - 1, last_seq = d.seq - 1, "
            f"updated_at = greatest(updated_at, {NOW}) FROM d WHERE id = %(id)s "
            "RETURNING d.seq, d.message"
        )

        def write(conn: Conn) -> Row | None:
            session = self._lock_session(conn, key)
            if session is None:
                return None
            row = conn.execute(query, {"id": session}).fetchone()
            return None if row is None else (row[0], row[1])

        return self._write(write)

    def _cut_turns(self, session_id: str, turns_start: Callable[[Iterable[Row]], Any]) -> list[Row]:
        key = db_id(session_id)

        def write(conn: Conn) -> list[Row]:
            session = self._lock_session(conn, key)
            if session is None:
                return []
            start = turns_start(self._newest_first(conn, session))
            return self._cut_rows(conn, session, 1 if start is None else int(start))

        return self._write(write)

    def _newest_first(self, conn: Conn, session: int) -> Iterator[Row]:
        """The session's ``(seq, message)`` rows, newest first, read a page at a time."""
        query = (
            f"SELECT seq, message FROM {self._tables.messages} WHERE session = %s AND seq < %s "
            "ORDER BY seq DESC LIMIT %s"
        )
        below = _MAX_SEQ
        while True:
            rows = conn.execute(query, (session, below, _PAGE)).fetchall()
            yield from rows
            if len(rows) < _PAGE:
                return
            below = rows[-1][0]

    def _cut(self, session_id: str, keep: int) -> list[Row]:
        key = db_id(session_id)

        def write(conn: Conn) -> list[Row]:
            session = self._lock_session(conn, key)
            start = min(keep, _MAX_SEQ) + 1
            return [] if session is None else self._cut_rows(conn, session, start)

        return self._write(write)

    def _cut_rows(self, conn: Conn, session: int, start: int) -> list[Row]:
        """Delete a locked session's messages from position ``start`` on; return them."""
        t = self._tables
        return conn.execute(
            f"WITH d AS (DELETE FROM {t.messages} WHERE session = %(id)s AND seq >= %(start)s "
            f"RETURNING seq, message), u AS (UPDATE {t.sessions} SET "
            "message_count = message_count - (SELECT count(*) FROM d), "
            f"last_seq = %(start)s - 1, updated_at = greatest(updated_at, {NOW}) "
            "WHERE id = %(id)s AND EXISTS (SELECT 1 FROM d)) "
            "SELECT seq, message FROM d ORDER BY seq",
            {"id": session, "start": start},
        ).fetchall()

    def _count(self, session_id: str) -> int:
        key = db_id(session_id)
        query = f"SELECT message_count FROM {self._tables.sessions} WHERE session_id = %s"
        row = self._read(lambda conn: conn.execute(query, (key,)).fetchone())
        return 0 if row is None else int(row[0])

    def _clear(self, session_id: str) -> None:
        # The session's row goes first (waiting for any add in flight), then every
        # message it had, so an add racing the clear is deleted whole or lands whole in
        # a new session.
        key = db_id(session_id)
        t = self._tables

        def write(conn: Conn) -> None:
            row = conn.execute(
                f"DELETE FROM {t.sessions} WHERE session_id = %s RETURNING id", (key,)
            ).fetchone()
            if row is not None:
                conn.execute(f"DELETE FROM {t.messages} WHERE session = %s", row)
                compaction.delete_sessions(conn, t, [row[0]])
            ledger.delete(conn, t, key)

        self._write(write)

    # -- the hooks of StoreBase: compaction (the work is in ``compaction``) -----------------

    def _compact(self, session_id: str, cut: int, summary: str, record: str) -> None:
        key, t = db_id(session_id), self._tables
        # An encrypted store's summary is ciphertext: no words of it go to the server.
        words = "" if self._encrypted is not None else searchable(message_text(json.loads(summary)))
        self._write(lambda conn: compaction.compact(conn, t, key, cut, summary, words, record))

    def _uncompact(self, session_id: str) -> tuple[str, Row] | None:
        key, t = db_id(session_id), self._tables
        return self._write(lambda conn: compaction.uncompact(conn, t, key))

    def _archive(self, session_id: str) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
        key, t = db_id(session_id), self._tables

        def read(conn: Conn) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
            with conn.transaction():  # one snapshot for the messages and the archive
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return compaction.archive(conn, t, key)

        return self._read(read)

    def _compaction_records(self, session_id: str) -> list[tuple[str, Row]]:
        key, t = db_id(session_id), self._tables
        return self._read(lambda conn: compaction.records(conn, t, key))

    # -- the hooks of StoreBase: the usage ledger (the work is in ``ledger``) ---------------

    def _usage(self, session_id: str) -> SessionUsage:
        key, t = db_id(session_id), self._tables
        return self._read(lambda conn: ledger.usage(conn, t, key))

    def _runs(self, session_id: str, limit: int) -> list[RunRecord]:
        key, t = db_id(session_id), self._tables
        return self._read(lambda conn: ledger.runs(conn, t, key, limit))

    def _usage_by_session(self, limit: int | None) -> list[tuple[str, SessionUsage]]:
        t = self._tables
        return self._read(lambda conn: ledger.usage_by_session(conn, t, limit))

    def _lock(self, session_id: str, owner: str, lease: float) -> bool:
        # An advisory lock on the store's lease connection (see ``lease``): no row is
        # written, and the server drops it when this process's connection goes.
        self._check_usable()
        try:
            return self._leases.try_lock(db_id(session_id), owner)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _unlock(self, session_id: str, owner: str) -> None:
        self._check_usable()
        try:
            self._leases.unlock(db_id(session_id), owner)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _lease_holder(self, session_id: str) -> LeaseHolder | None:
        # In this process: the table of owners. Elsewhere: the backend holding the
        # advisory lock, named by its lease connection's application_name.
        self._check_usable()
        key = db_id(session_id)
        if self._leases.held_here(key):
            return this_process()
        schema = self._tables.name
        row = self._read(lambda conn: conn.execute(HOLDER_SQL, (f"{schema}:{key}",)).fetchone())
        return None if row is None else holder_of_backend(row[0], row[1])

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")

    def _lease_connection(self) -> psycopg.Connection[Any]:
        """A new autocommit connection of the store's own, for its run leases."""
        if self._conninfo:
            conninfo = self._conninfo
            kwargs: dict[str, Any] = {}
        elif isinstance(self._pool.conninfo, str):
            pool_kwargs = self._pool.kwargs
            kwargs = dict(pool_kwargs() if callable(pool_kwargs) else pool_kwargs or {})
            conninfo = self._pool.conninfo
        else:
            raise StoreError(
                f"{self!r} cannot open a lease connection: its pool computes its conninfo "
                "when it connects; give the pool a conninfo string"
            )
        kwargs["autocommit"] = True
        kwargs["application_name"] = application_name()  # who holds its leases
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(conninfo):
            kwargs.setdefault("connect_timeout", max(2, math.ceil(self.pool_timeout)))
        return psycopg.connect(conninfo, **kwargs)

    # -- the hooks of StoreBase: history (the work is in ``history``) ------------------------

    def _sessions(
        self, wanted: dict[str, Any], after: tuple[float, Any] | None, limit: int | None
    ) -> list[tuple[SessionInfo, float, Any]]:
        t = self._tables
        return list(self._read(lambda conn: history.sessions(conn, t, wanted, after, limit)))

    def _info(self, session_id: str) -> SessionInfo | None:
        key = db_id(session_id)
        return self._read(lambda conn: history.session_info(conn, self._tables, key))

    def _put_metadata(self, session_id: str, text: str) -> None:
        params = {
            "key": db_id(session_id),
            "metadata": metadata_for_db(json.loads(text)),
        }
        query = history.upsert_metadata(self._tables, merge=False)
        self._run(lambda conn: conn.execute(query, params))

    def _update_metadata(
        self, session_id: str, changes: dict[str, Any], remove: list[str]
    ) -> dict[str, Any]:
        # One statement under the session's row lock (jsonb's || and -).
        params = {
            "key": db_id(session_id),
            "metadata": metadata_for_db(changes, "changes"),
            "remove": [db_id(name, "remove") for name in remove],
        }
        query = history.upsert_metadata(self._tables, merge=True)
        row = self._run(lambda conn: conn.execute(query, params).fetchone())
        assert row is not None
        return load_metadata(metadata_from_db(row[0]), session_id)

    def _search(
        self,
        query: str,
        session_id: str | None,
        limit: int,
        raw: bool,
        highlight: tuple[str, str],
    ) -> list[tuple[str, int, str, str, float]]:
        key = None if session_id is None else db_id(session_id)
        sql, params = history.search_sql(self._tables, query, key, limit, raw, highlight)
        return self._read(lambda conn: history.search(conn, sql, params, query, raw))

    def _fork(self, session_id: str, new_session_id: str, at: int | None) -> int:
        keys = (db_id(session_id), db_id(new_session_id))
        t = self._tables
        return self._write(lambda conn: history.fork(conn, t, keys, session_id, new_session_id, at))

    # -- the hooks of StoreBase: retention (the work is in ``retention``) --------------------

    def _prune(
        self,
        cutoff: float | None,
        keep_last: int | None,
        batch: int,
        dry_run: bool,
        progress: Progress | None,
    ) -> int:
        # Each batch locks the sessions it works on with FOR UPDATE SKIP LOCKED: a
        # session an add is writing right now is skipped (and found again by the next
        # batch), so pruning never waits for writers and never deadlocks with them.
        t = self._tables
        if dry_run:
            return self._read(lambda conn: retention.count(conn, t, cutoff, keep_last))
        removed = 0
        if cutoff is not None:
            idle = cutoff
            removed += self._batches(
                lambda conn: retention.delete_idle(conn, t, idle, batch)[0], progress
            )
        if keep_last is not None:
            kept = keep_last
            removed += self._batches(lambda conn: retention.trim(conn, t, kept, batch), progress)
        return removed

    def _expire_idle(self, cutoff: float, batch: int) -> int:
        t = self._tables
        sessions = 0
        while True:
            removed, gone = self._write(lambda conn: retention.delete_idle(conn, t, cutoff, batch))
            sessions += gone
            if removed is None:
                return sessions

    def _batches(self, step: Callable[[Conn], int | None], progress: Progress | None) -> int:
        """Run ``step`` in one transaction after another until it returns ``None``."""
        total = 0
        while (removed := self._write(step)) is not None:
            total += removed
            if progress is not None and removed:
                progress(removed)
        return total

    def _vacuum(self) -> None:
        t = self._tables
        self._run(lambda conn: retention.vacuum(conn, t))

    # -- the hooks of JsonlMixin (the work is in ``jsonl``) ----------------------------------

    def _jsonl_session_ids(self) -> Iterator[str]:
        after = 0
        while True:
            rows = self._read(functools.partial(jsonl.id_page, t=self._tables, after=after))
            for _, session_id in rows:
                yield session_id
            if len(rows) < jsonl.PAGE:
                return
            after = rows[-1][0]

    def _jsonl_missing(self, session_ids: list[str]) -> list[str]:
        keys = [db_id(session_id) for session_id in session_ids]
        t = self._tables
        return self._read(lambda conn: jsonl.missing(conn, t, session_ids, keys))

    def _jsonl_export_one(self, session_id: str, fp: IO[str]) -> bool:
        key = db_id(session_id)
        t = self._tables
        return self._run(lambda conn: jsonl.export_one(conn, t, session_id, key, fp))

    def _jsonl_store(self, session: ImportedSession, on_conflict: str) -> bool:
        key = db_id(session.session_id)
        prepared = jsonl.prepared(session)
        t = self._tables
        return self._write(lambda conn: jsonl.store_session(conn, t, key, prepared, on_conflict))
