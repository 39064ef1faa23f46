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
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

from ..._extras import require

try:
    import psycopg
    from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout, TooManyRequests
except ImportError:
    require("psycopg", "postgres", "PostgresStore")
    require("psycopg_pool", "postgres", "PostgresStore")
    raise

from ..._serialize import decode_messages, encode_messages, message_text
from ..._validate import check_limit
from ...exceptions import SchemaError, StoreBusy, StoreClosed, StoreError
from ..base import check_count, check_ttl, is_user_message, newest_window
from .base import MAX_ROWS, NOW, Conn, db_id, searchable
from .history import PostgresHistoryMixin
from .schema import Tables, check_schema_name, ensure_schema

__all__ = ("PostgresStore",)

T = TypeVar("T")

logger = logging.getLogger("agentsession")

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
    """``(postgresql://user@host:port/dbname, password)`` of a libpq conninfo or URL.

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
    at = f"{user}@" if user else ""
    return f"postgresql://{at}{host}:{port}/{dbname}", None if password is None else str(password)


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be more than 0 seconds, got {value!r}")
    return float(value)


class PostgresStore(PostgresHistoryMixin):
    """Session messages in PostgreSQL: one schema of tables, shared by every app server.

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
            connections have ``prepare_threshold=None``.
        schema: the PostgreSQL schema holding the tables (created if missing): a plain
            identifier, used quoted (case is kept).
        min_size: connections the store's own pool keeps open (0 or more).
        max_size: the most connections the store's own pool opens (1 or more).
        pool_timeout: seconds a call waits for a free connection before ``StoreBusy``;
            also bounds connecting and the wait for another server's schema set-up.
        ttl: delete sessions idle for longer than this. Enforced by the writers: at
            most once per tenth of the TTL (at least once a minute) an ``add_messages``
            call, after its own commit, removes the idle sessions in short batches.

    Raises:
        MissingDependencyError: ``psycopg`` / ``psycopg_pool`` are not installed (at
            import; the message has the ``pip install`` command).
        TypeError: an argument of the wrong type (``bool`` is not a number).
        ValueError: a bad schema name, size or timeout, or a ``conninfo`` libpq cannot
            parse.
        SchemaError: the schema was set up by a newer agentsession, the database is not
            UTF8, or the schema cannot be set up (permissions, lock timeout).
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
    ) -> None:
        if not isinstance(conninfo, (str, ConnectionPool)):
            raise TypeError(
                "conninfo must be a connection string or a psycopg_pool.ConnectionPool, "
                f"not {type(conninfo).__name__}"
            )
        self._tables = Tables(check_schema_name(schema))
        self.min_size = check_count(min_size, "min_size", minimum=0)
        self.max_size = check_count(max_size, "max_size", minimum=max(1, min_size))
        self.pool_timeout = _check_number(pool_timeout, "pool_timeout")
        self.ttl = None if ttl is None else check_ttl(ttl)
        self.schema = schema
        self._closed = False
        self._pid = os.getpid()
        self._next_expiry = 0.0
        self._expiry_lock = threading.Lock()
        #: Pools inherited through fork(): kept, never used or closed (see _after_fork).
        self._inherited: list[ConnectionPool] = []
        self._owns_pool = isinstance(conninfo, str)
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
            f"SELECT id FROM {self._tables.sessions} WHERE session_id = %s FOR UPDATE", (key,)
        ).fetchone()
        return None if row is None else int(row[0])

    # -- the Store API -------------------------------------------------------------------

    def get_messages(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the session's newest ``limit`` messages (all if ``None``), oldest first.

        One statement, an index range scan however long the session. A window
        (``limit`` set) is tool-safe: it never holds a tool output whose call was cut off,
        a call without its output, or an item whose reasoning item was cut off, so it may
        hold fewer than ``limit`` messages (see ``agentsession.window``). A stored row
        that is not valid JSON is skipped with a warning on the ``agentsession`` logger.

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``limit``.
            StoreBusy: no pooled connection came free within ``pool_timeout``.
            StoreClosed: the store is closed.
            StoreError: the server failed.
        """
        key = db_id(session_id)
        limit = check_limit(limit)
        if limit == 0:
            return []
        t = self._tables
        session = f"(SELECT id FROM {t.sessions} WHERE session_id = %s)"
        where = f"session {session_id!r}"
        if limit is None:
            query = f"SELECT seq, message FROM {t.messages} WHERE session = {session} ORDER BY seq"
            return decode_messages(
                self._read(lambda conn: conn.execute(query, (key,)).fetchall()), where
            )
        # One row more than asked for: see newest_window.
        query = (
            f"SELECT seq, message FROM {t.messages} WHERE session = {session} "
            "ORDER BY seq DESC LIMIT %s"
        )
        count = min(limit + 1, MAX_ROWS)
        rows = self._read(lambda conn: conn.execute(query, (key, count)).fetchall())
        return newest_window(rows, limit, where)

    def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        """Append ``messages`` to the session in one transaction, keeping their order.

        Every message is encoded before anything is sent, so bad input stores nothing.
        The add is one statement: an upsert of the session's row (which locks it until
        commit, so concurrent adds to one session from any host queue there, and
        reserves the positions) and the insert of the messages at those positions.

        Raises:
            TypeError: a message is not a JSON object or holds a value JSON cannot
                represent; the message names the item. Nothing is stored.
            ValueError: a bad ``session_id``.
            StoreBusy: no pooled connection came free within ``pool_timeout``, or a lock
                or statement timeout of the server ran out.
            StoreClosed: the store is closed.
            StoreError: the server failed; nothing of this add is stored.
        """
        key = db_id(session_id)
        encoded = encode_messages(messages)
        if not encoded:
            return
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
        params = {"key": key, "count": len(encoded), "messages": encoded, "texts": texts}
        self._run(lambda conn: conn.execute(query, params))
        if self.ttl is not None:
            self._expire_if_due(self.ttl)

    def _expire_if_due(self, ttl: timedelta) -> None:
        # The TTL is enforced by the writers: once per tenth of it (at least once a
        # minute) per process, after its own add has committed, one add deletes the
        # idle sessions. Its failure is logged, not raised: the add itself is stored.
        now = time.monotonic()
        with self._expiry_lock:
            due = now >= self._next_expiry
            if due:
                self._next_expiry = now + min(ttl.total_seconds() / 10, 60.0)
        if not due:
            return
        try:
            self.expire_idle(ttl)
        except StoreError as exc:
            logger.warning("could not expire idle sessions of %s: %s", self._where, exc)

    def pop_message(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return the session's newest message (``None`` if it has none).

        A newest row that is corrupt is removed too, and the next valid one returned.
        One transaction, holding the session's row lock.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        key = db_id(session_id)
        t = self._tables
        query = (
            f"WITH d AS (DELETE FROM {t.messages} WHERE session = %(id)s AND seq = "
            f"(SELECT max(seq) FROM {t.messages} WHERE session = %(id)s) RETURNING seq, message) "
            f"UPDATE {t.sessions} SET message_count = message_count - 1, last_seq = d.seq - 1, "
            f"updated_at = greatest(updated_at, {NOW}) FROM d WHERE id = %(id)s "
            "RETURNING d.seq, d.message"
        )

        def write(conn: Conn) -> dict[str, Any] | None:
            session = self._lock_session(conn, key)
            if session is None:
                return None
            while True:
                row = conn.execute(query, {"id": session}).fetchone()
                if row is None:
                    return None
                decoded = decode_messages([row], f"session {session_id!r}")
                if decoded:
                    return decoded[0]

        return self._write(write)

    def rewind(self, session_id: str, turns: int = 1) -> list[dict[str, Any]]:
        """Remove the session's last ``turns`` turns whole and return what was removed.

        A turn starts at a user message and runs to the next one, so tool calls, their
        outputs and the replies of a turn go with it. Fewer turns than asked for means
        the whole session is emptied. One transaction, holding the session's row lock.

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``turns`` not an int >= 1.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        key = db_id(session_id)
        check_count(turns, "turns", minimum=1)
        where = f"session {session_id!r}"

        def write(conn: Conn) -> list[tuple[int, str]]:
            session = self._lock_session(conn, key)
            if session is None:
                return []
            # Walk back from the newest message to the turns-th user message: the turns
            # to remove start there (or at 1, the whole session, if there are fewer).
            start, found = 1, 0
            for seq, text in self._newest_first(conn, session):
                if is_user_message(decode_messages([(seq, text)], where)):
                    found += 1
                    if found == turns:
                        start = seq
                        break
            return self._cut(conn, session, start)

        return decode_messages(self._write(write), where)

    def _newest_first(self, conn: Conn, session: int) -> Iterator[tuple[int, str]]:
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

    def truncate(self, session_id: str, keep: int) -> list[dict[str, Any]]:
        """Keep the session's oldest ``keep`` messages; remove and return the rest.

        This is what a failed run is rolled back with (see ``RunConfig``): the count
        taken before the run is passed back as ``keep``. One transaction.

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``keep`` not an int >= 0.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        key = db_id(session_id)
        check_count(keep, "keep", minimum=0)

        def write(conn: Conn) -> list[tuple[int, str]]:
            session = self._lock_session(conn, key)
            start = min(keep, _MAX_SEQ) + 1
            return [] if session is None else self._cut(conn, session, start)

        return decode_messages(self._write(write), f"session {session_id!r}")

    def _cut(self, conn: Conn, session: int, start: int) -> list[tuple[int, str]]:
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

    def message_count(self, session_id: str) -> int:
        """How many messages the session holds (0 for an unknown session).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        key = db_id(session_id)
        query = f"SELECT message_count FROM {self._tables.sessions} WHERE session_id = %s"
        row = self._read(lambda conn: conn.execute(query, (key,)).fetchone())
        return 0 if row is None else int(row[0])

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take the session's run lease for ``owner`` unless another live owner holds it.

        A lease lasts ``lease`` seconds (by the server's clock) unless renewed by
        calling this again as the same owner, so a process that dies holding one blocks
        others only that long. One statement: an upsert that only replaces the row of
        the same owner or of an expired lease.

        Raises:
            TypeError: a bad ``session_id``, ``owner`` not a str or ``lease`` not a number.
            ValueError: a bad ``session_id`` or a ``lease`` that is not positive.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        key = db_id(session_id)
        holder = db_id(owner, "owner")
        seconds = _check_number(lease, "lease")
        locks = self._tables.locks
        query = (
            f"INSERT INTO {locks} AS l (session_id, owner, expires_at) "
            f"VALUES (%s, %s, {NOW} + %s) ON CONFLICT (session_id) DO UPDATE SET "
            "owner = excluded.owner, expires_at = excluded.expires_at "
            f"WHERE l.owner = excluded.owner OR l.expires_at <= {NOW} RETURNING 1"
        )
        row = self._run(lambda conn: conn.execute(query, (key, holder, seconds)).fetchone())
        return row is not None

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the session's run lease back, if ``owner`` still holds it.

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``owner``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        key = db_id(session_id)
        holder = db_id(owner, "owner")
        query = f"DELETE FROM {self._tables.locks} WHERE session_id = %s AND owner = %s"
        self._run(lambda conn: conn.execute(query, (key, holder)))

    def clear_session(self, session_id: str) -> None:
        """Delete the session and all its messages (a no-op for an unknown session).

        One transaction: the session's row goes first (waiting for any add in flight),
        then every message it had, so an add racing the clear is deleted whole or
        lands whole in a new session.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        key = db_id(session_id)
        t = self._tables

        def write(conn: Conn) -> None:
            row = conn.execute(
                f"DELETE FROM {t.sessions} WHERE session_id = %s RETURNING id", (key,)
            ).fetchone()
            if row is not None:
                conn.execute(f"DELETE FROM {t.messages} WHERE session = %s", row)

        self._write(write)
