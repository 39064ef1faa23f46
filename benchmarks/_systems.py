"""One small interface over every system measured, each used through its public API.

A *system* opens a *handle* on a directory. Sync handles (``get``, ``add``, ``close``) are
called from threads; async handles (the same names, as coroutines, plus ``aclose``) from
tasks on an event loop, and are opened inside the loop that uses them. ``list_recent``
(the most recently active session ids) exists only where the system has a public way to
list sessions.

The systems: ``raw`` (the limit: stdlib ``sqlite3``, minimal SQL), agentsession's blocking
store and async memory (file and ``":memory:"``), and the Agents SDK's ``SQLiteSession``,
``AsyncSQLiteSession`` and ``SQLAlchemySession`` (see ``_systems_sdk``). W8 adds the same
four kinds on a PostgreSQL and a Redis server (``pg-*`` and ``redis-*``, see
``_systems_servers``), opened with ``connect(url, namespace)`` instead of ``open``. W9
(the whole Runner) also has two references with no handle: ``none`` (no session) and
``list`` (a Python list per session id, the limit for any memory). An optional competitor
whose dependencies are missing is skipped with a warning.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = (
    "SYSTEMS",
    "LockedRawSQLite",
    "MemoryHandle",
    "MemoryOver",
    "RawSQLite",
    "StoreHandle",
    "StoreOver",
    "System",
    "available",
    "sdk_synchronous",
)

Item = dict[str, Any]


def sdk_synchronous() -> str:
    """The ``synchronous`` level the SDK's sessions run at: SQLite's compiled default.

    The SDK opens plain ``sqlite3.connect()`` connections and sets only WAL, so its
    durability is whatever this SQLite build defaults to (``FULL`` unless compiled
    otherwise). Every other system is run at the same level.
    """
    conn = sqlite3.connect(":memory:")
    try:
        level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        conn.close()
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[level]


@dataclass(frozen=True)
class System:
    """A system under test.

    Attributes:
        key: short id used in tables and ``--systems``.
        label: what tables and charts call it.
        role: ``"limit"`` (raw sqlite3), ``"ours"`` or ``"sdk"``.
        is_async: handles are async (used from tasks) rather than sync (from threads).
        layout: the on-disk schema (``"raw"``, ``"agentsession"``, ``"sdk"``,
            ``"sqlalchemy"``), or ``None`` for an in-memory database.
        loop_safe: one handle may be shared by threads each running its own event loop.
        requires: modules that must be importable, else the system is skipped.
        open: ``open(directory, synchronous)`` returns a handle; for async systems it must
            be called inside the event loop that will use the handle.
        workloads: the workloads the system takes part in (``None``: all).
        engine: ``"sqlite"``, or the server a W8 system runs on (``"postgres"``,
            ``"redis"``).
        connect: for a server system, ``connect(url, namespace)`` returns a handle whose
            data lives only in ``namespace`` (a PostgreSQL schema, a Redis key prefix).
    """

    key: str
    label: str
    role: str
    is_async: bool
    layout: str | None
    loop_safe: bool
    requires: tuple[str, ...]
    open: Callable[[Path, str], Any]
    workloads: tuple[str, ...] | None = None
    engine: str = "sqlite"
    connect: Callable[[str, str], Any] | None = None

    @property
    def file_backed(self) -> bool:
        """The system keeps its data in a file (so processes can share it)."""
        return self.layout is not None

    def names(self) -> set[str]:
        """What ``--systems`` may call it: its key; for a server system also the kind
        (``store`` selects ``pg-store`` and ``redis-store``) and the engine prefix
        (``pg`` selects every PostgreSQL system)."""
        if self.engine == "sqlite":
            return {self.key}
        prefix, _, kind = self.key.partition("-")
        return {self.key, prefix, kind}


def db_path(directory: Path, layout: str | None) -> Path:
    """The database file a system of ``layout`` uses inside ``directory``."""
    return directory / f"{layout or 'memory'}.db"


# -- the limit: raw sqlite3 ------------------------------------------------------------

_RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, session_id TEXT NOT NULL UNIQUE, updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated_at);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, session INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_session ON messages (session, id);
"""

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.JSONDecoder().decode


class RawSQLite:
    """The physical limit: the same SQL work done minimally with stdlib ``sqlite3``.

    One connection per thread, WAL, one ``BEGIN IMMEDIATE`` transaction per add, the
    newest ``limit`` read through the ``(session, id)`` index, JSON encoding and decoding
    included; no validation, no error mapping, no thread hop.
    """

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._conn().executescript(_RAW_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def get(self, session_id: str, limit: int | None) -> list[Item]:
        conn = self._conn()
        if limit is None:
            rows = conn.execute(
                "SELECT m.data FROM messages m JOIN sessions s ON m.session = s.id "
                "WHERE s.session_id = ? ORDER BY m.id",
                (session_id,),
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT m.data FROM messages m JOIN sessions s ON m.session = s.id "
                "WHERE s.session_id = ? ORDER BY m.id DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
            rows.reverse()
        return [_loads(text) for (text,) in rows]

    def add(self, session_id: str, items: list[Item]) -> None:
        texts = [_dumps(item) for item in items]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            (session,) = conn.execute(
                "INSERT INTO sessions (session_id, updated_at) VALUES (?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET updated_at = excluded.updated_at "
                "RETURNING id",
                (session_id, time.time()),
            ).fetchone()
            conn.executemany(
                "INSERT INTO messages (session, data) VALUES (?, ?)",
                [(session, text) for text in texts],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def list_recent(self, count: int) -> list[str]:
        rows = self._conn().execute(
            "SELECT session_id FROM sessions ORDER BY updated_at DESC, id DESC LIMIT ?",
            (count,),
        )
        return [session_id for (session_id,) in rows]

    def connections(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()


class LockedRawSQLite(RawSQLite):
    """A probe, not a competitor: raw sqlite3 whose threads queue for writes on one
    process-wide lock per file before ``BEGIN IMMEDIATE``.

    Threads of one process then hand the write lock over without going through SQLite's
    busy handler (which sleeps 1, 2, 5 ... 100 ms between tries, and is unfair); other
    processes still wait in it. W3 runs it to show what that change would do to the tail.
    """

    _locks: dict[Path, threading.Lock] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path, synchronous: str) -> None:
        super().__init__(path, synchronous)
        with self._guard:
            self._write_lock = self._locks.setdefault(path.resolve(), threading.Lock())

    def add(self, session_id: str, items: list[Item]) -> None:
        with self._write_lock:
            super().add(session_id, items)


# -- agentsession ----------------------------------------------------------------------


class StoreOver:
    """agentsession's blocking store, any engine (``memory.store``): get, add, close."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, session_id: str, limit: int | None) -> list[Item]:
        return self.store.get_messages(session_id, limit)  # type: ignore[no-any-return]

    def add(self, session_id: str, items: list[Item]) -> None:
        self.store.add_messages(session_id, items)

    def close(self) -> None:
        self.store.close()


class StoreHandle(StoreOver):
    """agentsession's blocking ``SQLiteStore`` (what ``memory.store`` is)."""

    def __init__(self, path: Path | str, synchronous: str) -> None:
        from agentsession import SQLiteStore

        super().__init__(SQLiteStore(path, synchronous=synchronous))

    def list_recent(self, count: int) -> list[str]:
        # The newest N, as a user lists them: one page (ORDER BY updated_at DESC LIMIT).
        page = self.store.list_sessions_page(limit=count)
        return [info.session_id for info in page.sessions]

    def connections(self) -> int:
        return self.store.connection_count  # type: ignore[no-any-return]


class MemoryOver:
    """agentsession's async memory, any engine, read and written as the Runner does:
    through ``memory.session(id)``, the SDK ``Session`` it hands to the SDK's runner."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory
        self._sessions: dict[str, Any] = {}

    def _session(self, session_id: str) -> Any:
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = self.memory.session(session_id)
        return session

    async def get(self, session_id: str, limit: int | None) -> list[Item]:
        return await self._session(session_id).get_items(limit)  # type: ignore[no-any-return]

    async def add(self, session_id: str, items: list[Item]) -> None:
        await self._session(session_id).add_items(items)

    async def aclose(self) -> None:
        await self.memory.aclose()


class MemoryHandle(MemoryOver):
    """``SQLiteSessionMemory`` through ``memory.session(id)`` (see ``MemoryOver``)."""

    def __init__(self, path: Path | str, synchronous: str) -> None:
        from agentsession import SQLiteSessionMemory

        super().__init__(SQLiteSessionMemory(path, synchronous=synchronous))

    async def list_recent(self, count: int) -> list[str]:
        page = await self.memory.list_sessions_page(limit=count)
        return [info.session_id for info in page.sessions]

    def connections(self) -> int:
        return self.memory.store.connection_count  # type: ignore[no-any-return]


def _open_store(directory: Path, synchronous: str) -> StoreHandle:
    return StoreHandle(db_path(directory, "agentsession"), synchronous)


def _open_memory(directory: Path, synchronous: str) -> MemoryHandle:
    return MemoryHandle(db_path(directory, "agentsession"), synchronous)


def _open_memory_private(directory: Path, synchronous: str) -> MemoryHandle:
    return MemoryHandle(":memory:", synchronous)


def _open_raw(directory: Path, synchronous: str) -> RawSQLite:
    return RawSQLite(db_path(directory, "raw"), synchronous)


def _open_raw_locked(directory: Path, synchronous: str) -> RawSQLite:
    return LockedRawSQLite(db_path(directory, "raw"), synchronous)


def _sdk_opener(name: str) -> Callable[[Path, str], Any]:
    def open_sdk(directory: Path, synchronous: str) -> Any:
        from . import _systems_sdk

        return getattr(_systems_sdk, name)(directory)

    return open_sdk


def _server_opener(name: str) -> Callable[[str, str], Any]:
    def connect(url: str, namespace: str) -> Any:
        from . import _systems_servers

        return getattr(_systems_servers, name)(url, namespace)

    return connect


def _no_directory(directory: Path, synchronous: str) -> Any:
    raise TypeError("a server system is opened with connect(url, namespace)")


def _server(
    key: str, label: str, role: str, is_async: bool, requires: tuple[str, ...], opener: str
) -> System:
    engine = "postgres" if key.startswith("pg-") else "redis"
    workloads = ("W8", "W9") if is_async else ("W8",)  # W9 runs the async memories
    return System(key, label, role, is_async, None, False, requires, _no_directory,
                  workloads=workloads, engine=engine, connect=_server_opener(opener))  # fmt: skip


_PG = ("psycopg",)
_REDIS = ("redis",)


def _runner_only(directory: Path, synchronous: str) -> Any:
    raise TypeError("a runner-level baseline (W9) has no get/add handle")


SYSTEMS: tuple[System, ...] = (
    System("raw", "raw sqlite3 (limit)", "limit", False, "raw", True, (), _open_raw),
    System(
        "raw-locked",
        "raw sqlite3 + write lock (probe)",
        "probe",
        False,
        "raw",
        True,
        (),
        _open_raw_locked,
        workloads=("W3",),
    ),
    System("store", "agentsession store", "ours", False, "agentsession", True, (), _open_store),
    System("memory", "agentsession memory", "ours", True, "agentsession", True, (), _open_memory),
    System(
        "memory-ram",
        "agentsession memory :memory:",
        "ours",
        True,
        None,
        True,
        (),
        _open_memory_private,
    ),
    System("sdk", "SDK SQLiteSession", "sdk", True, "sdk", True, (), _sdk_opener("SQLiteHandle")),
    System(
        "sdk-async",
        "SDK AsyncSQLiteSession",
        "sdk",
        True,
        "sdk",
        False,
        ("aiosqlite",),
        _sdk_opener("AsyncSQLiteHandle"),
    ),
    System(
        "sdk-sqlalchemy",
        "SDK SQLAlchemySession",
        "sdk",
        True,
        "sqlalchemy",
        False,
        ("sqlalchemy", "aiosqlite", "greenlet"),
        _sdk_opener("SQLAlchemyHandle"),
    ),
    _server("pg-raw", "raw psycopg (limit)", "limit", False, _PG, "connect_raw_postgres"),
    _server(
        "pg-store",
        "agentsession PostgresStore",
        "ours",
        False,
        (*_PG, "psycopg_pool"),
        "connect_postgres_store",
    ),
    _server(
        "pg-memory",
        "agentsession PostgresSessionMemory",
        "ours",
        True,
        (*_PG, "psycopg_pool"),
        "connect_postgres_memory",
    ),
    _server(
        "pg-sdk",
        "SDK SQLAlchemySession (psycopg)",
        "sdk",
        True,
        (*_PG, "sqlalchemy", "greenlet"),
        "connect_postgres_sdk",
    ),
    _server("redis-raw", "raw redis-py (limit)", "limit", False, _REDIS, "connect_raw_redis"),
    _server("redis-store", "agentsession RedisStore", "ours", False, _REDIS, "connect_redis_store"),
    _server(
        "redis-memory",
        "agentsession RedisSessionMemory",
        "ours",
        True,
        _REDIS,
        "connect_redis_memory",
    ),
    _server("redis-sdk", "SDK RedisSession", "sdk", True, _REDIS, "connect_redis_sdk"),
    # W9's references at the runner level: the SDK's Runner without a session, and with
    # a session that is a Python list per session id (the limit for any memory).
    System("none", "no session", "probe", True, None, True, (), _runner_only, workloads=("W9",)),
    System(
        "list",
        "list session (limit)",
        "limit",
        True,
        None,
        True,
        (),
        _runner_only,
        workloads=("W9",),
    ),
)


def available(keys: list[str] | None = None, workloads: list[str] | None = None) -> list[System]:
    """The systems to run (all, or those named, and only those that take part in one of
    ``workloads``), skipping any whose imports are missing."""
    chosen: list[System] = []
    for system in SYSTEMS:
        if keys is not None and not system.names() & set(keys):
            continue
        if workloads is not None and system.workloads is not None:
            if not set(system.workloads) & set(workloads):
                continue
        missing = [name for name in system.requires if importlib.util.find_spec(name) is None]
        if missing:
            extras = "bench" if system.engine == "sqlite" else f"bench,{system.engine}"
            warnings.warn(
                f"skipping {system.label}: {', '.join(missing)} not installed "
                f"(pip install -e '.[{extras}]')",
                stacklevel=2,
            )
            continue
        chosen.append(system)
    return chosen
