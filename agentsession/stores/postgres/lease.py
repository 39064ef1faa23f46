"""Run leases as PostgreSQL advisory locks: no table write, released when a process dies.

Each store, in each process, keeps one connection of its own for leases (outside the
pool, so leases never take connections from the store's calls). A lease is a
session-level advisory lock on that connection, keyed by
``hashtextextended('<schema>:<session id>', 0)``; threads of the process are told apart by
a table of owners kept here. The server drops every lock of a connection that closes, so
a process that dies (even by SIGKILL) releases its leases as soon as the server notices
its socket is gone, which on one machine or a LAN is at once.

If the lease connection breaks (a server restart, a failover), every lease it held is
gone: the next ``try_lock`` reconnects and starts afresh, and runs that held a lease go
on without it until they end.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from ...protocol import LeaseHolder

__all__ = (
    "HOLDER_SQL",
    "AdvisoryLeases",
    "application_name",
    "holder_of_backend",
    "lease_key_sql",
    "not_leased_sql",
)


def lease_key_sql(schema_param: str = "%s") -> str:
    """SQL for the advisory-lock key of a session, given ``'<schema>:<id>'`` as a parameter."""
    return f"hashtextextended({schema_param}, 0)"


def not_leased_sql(schema: str, column: str = "s.session_id") -> str:
    """SQL condition: no process holds the lease of the session in ``column`` right now.

    It reads the server's lock table for the advisory lock ``try_lock`` takes (a bigint
    key shows there as two 32-bit halves). ``schema`` must be a checked schema name.
    """
    key = f"hashtextextended('{schema}:' || {column}, 0)"
    return (
        "NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' "
        "AND l.objsubid = 1 AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND l.classid::bigint = (({key} >> 32) & 4294967295) "
        f"AND l.objid::bigint = ({key} & 4294967295))"
    )


#: The backend holding the advisory lock of the key given as the one parameter (as
#: ``lease_key_sql``): its ``application_name`` and client address, or no row.
HOLDER_SQL = (
    "SELECT a.application_name, host(a.client_addr) FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid "
    "CROSS JOIN (SELECT " + lease_key_sql() + " AS key) k "
    "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid::bigint = ((k.key >> 32) & 4294967295) "
    "AND l.objid::bigint = (k.key & 4294967295) LIMIT 1"
)

# The lease connection's application_name: "agentsession:<pid>@<host>" (63 bytes at most).
_APPLICATION = re.compile(r"agentsession:([0-9]{1,10})@(.*)")


def application_name() -> str:
    """The ``application_name`` of this process's lease connections: its pid and host,
    so that a process waiting for a lease can tell who holds it (``holder_of_backend``);
    set once per connection, so runs pay nothing for it."""
    host = socket.gethostname().encode("ascii", "replace").decode("ascii")
    return f"agentsession:{os.getpid()}@{host}"[:63]


def holder_of_backend(application: str | None, client_addr: str | None) -> LeaseHolder:
    """The holder a backend's ``application_name`` names (see ``application_name``);
    else just its client address (``None`` over a Unix socket)."""
    match = _APPLICATION.fullmatch(application or "")
    if match is None:
        return LeaseHolder(None, client_addr)
    return LeaseHolder(int(match.group(1)), match.group(2))


class AdvisoryLeases:
    """The run leases of one store in one process (see the module docstring).

    Thread safety: every method may be called from any thread; calls take turns on the
    one lease connection (each is one short round trip).

    Args:
        connect: opens a new autocommit connection to the store's database.
        namespace: the store's schema: leases of stores in different schemas never meet.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], namespace: str) -> None:
        self._connect = connect
        self._namespace = namespace
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        #: session id (as stored) -> the owner holding its lease in this process.
        self._held: dict[str, str] = {}

    def _key(self, session_id: str) -> str:
        return f"{self._namespace}:{session_id}"

    def _connection(self) -> psycopg.Connection[Any]:
        if self._pid != os.getpid():
            # A forked child holds none of the parent's locks and must not use its socket.
            self._conn, self._held, self._pid = None, {}, os.getpid()
        if self._conn is None or self._conn.closed:
            self._held.clear()  # a new connection holds nothing yet
            self._conn = self._connect()
        return self._conn

    def _execute(self, query: str, key: str) -> Any:
        conn = self._connection()
        try:
            row = conn.execute(query, (key,)).fetchone()
        except psycopg.Error:
            # The connection's locks are gone with it (or soon will be): start afresh.
            self._drop()
            raise
        return None if row is None else row[0]

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def try_lock(self, session_id: str, owner: str) -> bool:
        """Take the lease of ``session_id`` (as stored) for ``owner``; never waits.

        Raises:
            psycopg.Error: the server could not be reached (the caller translates it).
        """
        with self._lock:
            holder = self._held.get(session_id)
            if holder is not None and self._pid == os.getpid():
                return holder == owner
            taken = bool(
                self._execute(
                    f"SELECT pg_try_advisory_lock({lease_key_sql()})", self._key(session_id)
                )
            )
            if taken:
                self._held[session_id] = owner
            return taken

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the lease of ``session_id`` back if ``owner`` holds it.

        Raises:
            psycopg.Error: the server could not be reached (the lease is gone anyway).
        """
        with self._lock:
            if self._pid != os.getpid() or self._held.get(session_id) != owner:
                return
            del self._held[session_id]
            self._execute(f"SELECT pg_advisory_unlock({lease_key_sql()})", self._key(session_id))

    def held_here(self, session_id: str) -> bool:
        """Whether an owner of this process holds the lease of ``session_id`` (as stored)."""
        with self._lock:
            return self._pid == os.getpid() and session_id in self._held

    def close(self) -> None:
        """Close the lease connection, releasing every lease this process holds."""
        with self._lock:
            if self._pid == os.getpid():
                self._drop()
