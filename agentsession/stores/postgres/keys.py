"""``PostgresKeyTable``: wrapped data keys in a PostgreSQL table.

An encrypted ``PostgresStore`` keeps them in ``agentsession_keys`` of its own schema
(migration 0005) by default, on its own pool. To keep them elsewhere (another schema
with its own grants and its own dumps, or another server), pass
``Encryption(key, key_store=PostgresKeyTable(conninfo, schema="vault"))``: it then has a
connection of its own and creates its table if missing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..._extras import require

try:
    import psycopg
except ImportError:
    require("psycopg", "postgres", "PostgresKeyTable")
    raise

from ...exceptions import StoreClosed, StoreError
from .base import Conn, db_id, from_db_id
from .schema import KEYS, KEYS_TABLE, check_schema_name

__all__ = ("PostgresKeyTable",)

T = TypeVar("T")

Runner = Callable[[Callable[[Conn], Any]], Any]


class PostgresKeyTable:
    """A ``protocol.KeyStore`` in the table ``agentsession_keys`` of a PostgreSQL schema.

    Args:
        conninfo: the server (a connection string); the table is created, with its
            schema, if missing.
        schema: the schema holding the table.

    Raises:
        TypeError, ValueError: a bad ``conninfo`` or ``schema``.
        StoreError: the server cannot be reached or the table cannot be created.

    Thread safety: every method may be called from any thread (one connection, taken in
    turns; a fresh one after a fork or a failure).
    """

    def __init__(self, conninfo: str, *, schema: str = "public") -> None:
        if not isinstance(conninfo, str):
            raise TypeError(f"conninfo must be a str, not {type(conninfo).__name__}")
        self.schema = check_schema_name(schema)
        self._table = f'"{schema}".{KEYS}'
        self._conninfo = conninfo
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._runner: Runner = self._own
        self._own(
            lambda conn: (
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'),
                conn.execute(KEYS_TABLE.format(keys=self._table)),
            )
        )

    @classmethod
    def on_store(cls, runner: Runner, table: str, where: str) -> PostgresKeyTable:
        """The key table of a store's own schema (``table``, qualified), on its pool."""
        keys = cls.__new__(cls)
        keys.schema = where
        keys._table = table
        keys._conninfo = ""
        keys._conn = None
        keys._pid = os.getpid()
        keys._lock = threading.Lock()
        keys._closed = False
        keys._runner = runner
        return keys

    def __repr__(self) -> str:
        return f"PostgresKeyTable({self._table})"

    def _own(self, work: Callable[[Conn], T]) -> T:
        with self._lock:
            if self._closed:
                raise StoreClosed(f"{self!r} is closed")
            try:
                if self._conn is None or self._conn.closed or self._pid != os.getpid():
                    self._conn = psycopg.connect(self._conninfo, autocommit=True)
                    self._pid = os.getpid()
                return work(self._conn)
            except psycopg.Error as exc:
                if self._conn is not None and self._conn.broken:
                    self._conn = None
                raise StoreError(f"key table {self._table}: {exc}".strip()) from exc

    def get(self, session_ids: list[str]) -> dict[str, str]:
        if not session_ids:
            return {}
        keys = [db_id(session_id) for session_id in session_ids]
        rows = self._runner(
            lambda conn: conn.execute(
                f"SELECT session_id, record FROM {self._table} WHERE session_id = ANY(%s)",
                (keys,),
            ).fetchall()
        )
        return {from_db_id(key): record for key, record in rows}

    def add(self, session_id: str, record: str) -> str:
        # One statement: insert unless present, and return whichever record is stored.
        query = (
            f"WITH added AS (INSERT INTO {self._table} (session_id, record) VALUES (%s, %s) "
            "ON CONFLICT (session_id) DO NOTHING RETURNING record) "
            f"SELECT record FROM added UNION ALL SELECT record FROM {self._table} "
            "WHERE session_id = %s"
        )
        key = db_id(session_id)
        row = self._runner(lambda conn: conn.execute(query, (key, record, key)).fetchone())
        if row is None:  # another process added one after this statement's snapshot
            return self.get([session_id])[session_id]
        return str(row[0])

    def replace(self, session_id: str, old: str, new: str) -> bool:
        key = db_id(session_id)
        cursor = self._runner(
            lambda conn: conn.execute(
                f"UPDATE {self._table} SET record = %s WHERE session_id = %s AND record = %s",
                (new, key, old),
            )
        )
        return bool(cursor.rowcount == 1)

    def delete(self, session_id: str) -> None:
        key = db_id(session_id)
        self._runner(
            lambda conn: conn.execute(f"DELETE FROM {self._table} WHERE session_id = %s", (key,))
        )

    def page(self, cursor: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        start = "" if cursor is None else cursor
        rows = self._runner(
            lambda conn: conn.execute(
                f"SELECT session_id, record FROM {self._table} WHERE session_id > %s "
                "ORDER BY session_id LIMIT %s",
                (start, limit),
            ).fetchall()
        )
        # The cursor is the last id as stored (escaped), which the next page compares to.
        following = rows[-1][0] if len(rows) == limit else None
        return [(from_db_id(key), record) for key, record in rows], following

    def count(self) -> int:
        row = self._runner(
            lambda conn: conn.execute(f"SELECT count(*) FROM {self._table}").fetchone()
        )
        return int(row[0])

    def close(self) -> None:
        """Close the connection this key table opened (a store's pool is the store's)."""
        if self._runner != self._own:
            return
        with self._lock:
            self._closed = True
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
