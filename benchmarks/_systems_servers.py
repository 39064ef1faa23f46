"""Systems on a PostgreSQL or Redis server (W8), each in a namespace of its own.

Every handle is opened with ``connect(url, namespace)``: PostgreSQL systems keep their
tables in the schema ``namespace`` (created here, or by the store), Redis systems write
only keys that start with ``namespace``. ``sweep(servers, base)`` drops every schema and
deletes every key whose name starts with ``base`` at the end of the workload; nothing
else on the servers is touched (no database is ever flushed).

The systems on each server: the limit (raw psycopg 3 / raw redis-py doing the same work
in the fewest round trips), agentsession's blocking store (driven from threads) and async
memory (tasks on one loop, through ``memory.session(id)`` as the Runner uses it), and the
SDK's session for that server (``SQLAlchemySession`` over ``postgresql+psycopg``, and
``RedisSession``), one SDK object per session id sharing one engine or client per handle.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ._systems import MemoryOver, StoreOver
from ._systems_sdk import SQLAlchemySessions, _PerSession

__all__ = (
    "DEFAULT_POSTGRES",
    "DEFAULT_REDIS",
    "RawPostgres",
    "RawRedis",
    "reachable",
    "redact",
    "server_facts",
    "sweep",
)

Item = dict[str, Any]

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_PORTS = {"postgres": 5432, "redis": 6379}

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.JSONDecoder().decode


def redact(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@`` URL replaced by
    ``***`` (RESULTS.md records the command and the servers)."""
    return re.sub(r"(://[^/:@\s]*:)[^@\s]+@", r"\1***@", text)


def reachable(engine: str, url: str) -> str | None:
    """``None`` if something answers at ``url``'s host and port, else why not."""
    parts = urlsplit(url)
    try:
        address = (parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS[engine])
        with socket.create_connection(address, timeout=2):
            return None
    except (OSError, ValueError) as exc:
        return f"no {engine} server answers at {redact(url)} ({exc})"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _create_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")


def sweep(servers: dict[str, str], base: str, engines: set[str]) -> list[str]:
    """Drop the PostgreSQL schemas and delete the Redis keys whose names start with
    ``base``; return what was removed, as lines for the log."""
    removed: list[str] = []
    if "postgres" in engines:
        import psycopg

        with psycopg.connect(servers["postgres"], autocommit=True) as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE left(nspname, length(%s)) = %s",
                (base, base),
            ).fetchall()
            for (schema,) in rows:
                conn.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
                removed.append(f"PostgreSQL schema {schema}")
    if "redis" in engines:
        import redis

        client = redis.Redis.from_url(servers["redis"])
        try:
            keys = list(client.scan_iter(match=base.replace("*", r"\*") + "*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            if keys:
                removed.append(f"{len(keys)} Redis keys under {base}")
        finally:
            client.close()
    return removed


def server_facts(engine: str, url: str) -> str:
    """The server's version and durability settings, for the report."""
    try:
        if engine == "postgres":
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                show = {
                    name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                    for name in ("server_version", "synchronous_commit", "fsync")
                }
            return (
                f"PostgreSQL {show['server_version']}, synchronous_commit="
                f"{show['synchronous_commit']}, fsync={show['fsync']}"
            )
        import redis

        client = redis.Redis.from_url(url)
        try:
            version = client.info("server").get("redis_version", "?")
            try:
                config = {**client.config_get("appendonly"), **client.config_get("save")}
                durability = f"appendonly={config.get('appendonly')}, save={config.get('save')!r}"
            except redis.RedisError:
                durability = "persistence settings not readable (CONFIG disabled)"
        finally:
            client.close()
        return f"Redis {version}, {durability}"
    except Exception as exc:  # noqa: BLE001 - a fact we could not read is reported as such
        return f"{engine}: could not read the server's settings ({type(exc).__name__}: {exc})"


# -- the limits ------------------------------------------------------------------------


class _Lease:
    """A thread's hold on a connection; when the thread ends (and its thread-local
    storage with it) the connection goes back to the free list for the next thread."""

    def __init__(self, free: list[Any], conn: Any) -> None:
        self.free = free
        self.conn = conn

    def __del__(self) -> None:
        self.free.append(self.conn)


class RawPostgres:
    """The limit on PostgreSQL: psycopg 3, one autocommit connection per thread.

    An add is one statement, so one round trip and one transaction: it upserts the
    session row (its activity time) and inserts the batch, in order, in a CTE. A read is
    one indexed query through ``(session, id)``; JSON is encoded and decoded in Python,
    as for every other system. Statements are prepared by psycopg after a few uses. A
    thread that ends hands its connection to the next new thread, so workloads that start
    fresh threads every round do not pile up server connections.
    """

    def __init__(self, dsn: str, schema: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self.dsn = dsn
        self.schema = schema
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._free: list[Any] = []
        q = _quote(schema)
        self._conn().execute(
            f"CREATE SCHEMA IF NOT EXISTS {q};"
            f"CREATE TABLE IF NOT EXISTS {q}.sessions (id bigserial PRIMARY KEY, "
            'session_id text COLLATE "C" NOT NULL UNIQUE, updated_at timestamptz NOT NULL);'
            f"CREATE INDEX IF NOT EXISTS sessions_updated ON {q}.sessions (updated_at);"
            f"CREATE TABLE IF NOT EXISTS {q}.messages (id bigserial PRIMARY KEY, "
            "session bigint NOT NULL, data text NOT NULL);"
            f"CREATE INDEX IF NOT EXISTS messages_session ON {q}.messages (session, id);"
        )
        self._add = (
            f"WITH s AS (INSERT INTO {q}.sessions (session_id, updated_at) VALUES (%s, now()) "
            "ON CONFLICT (session_id) DO UPDATE SET updated_at = excluded.updated_at "
            f"RETURNING id) INSERT INTO {q}.messages (session, data) "
            "SELECT s.id, t.data FROM s, unnest(%s::text[]) WITH ORDINALITY AS t(data, n) "
            "ORDER BY t.n"
        )
        # The session's key first, then a range scan of (session, id): with a join,
        # PostgreSQL's generic plan may walk the whole messages index backwards instead.
        select = (
            f"SELECT m.data FROM {q}.messages m WHERE m.session = "
            f"(SELECT id FROM {q}.sessions WHERE session_id = %s) ORDER BY m.id"
        )
        self._all = select
        self._newest = select + " DESC LIMIT %s"

    def _conn(self) -> Any:
        lease = getattr(self._local, "lease", None)
        if lease is None:
            try:
                conn = self._free.pop()
            except IndexError:
                conn = self._psycopg.connect(self.dsn, autocommit=True)
                with self._lock:
                    self._connections.append(conn)
            lease = self._local.lease = _Lease(self._free, conn)
        return lease.conn

    def get(self, session_id: str, limit: int | None) -> list[Item]:
        conn = self._conn()
        if limit is None:
            rows = conn.execute(self._all, (session_id,)).fetchall()
        else:
            rows = conn.execute(self._newest, (session_id, limit)).fetchall()
            rows.reverse()
        return [_loads(text) for (text,) in rows]

    def add(self, session_id: str, items: list[Item]) -> None:
        texts = [_dumps(item) for item in items]
        self._conn().execute(self._add, (session_id, texts))

    def connections(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()


class RawRedis:
    """The limit on Redis: redis-py's blocking client (a pooled connection per thread).

    An add is one ``MULTI`` round trip: ``RPUSH`` of the batch onto the session's list and
    a ``ZADD`` of its activity time (what raw sqlite3's session row records). A read is
    one ``LRANGE`` of the newest ``limit`` (or all); JSON in Python, as everywhere.
    """

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self._recent = f"{prefix}:recent"

    def get(self, session_id: str, limit: int | None) -> list[Item]:
        key = f"{self.prefix}:s:{session_id}"
        raw = self.client.lrange(key, 0 if limit is None else -limit, -1)
        return [_loads(data.decode()) for data in raw]  # type: ignore[union-attr]

    def add(self, session_id: str, items: list[Item]) -> None:
        texts = [_dumps(item) for item in items]
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(f"{self.prefix}:s:{session_id}", *texts)
        pipe.zadd(self._recent, {session_id: time.time()})
        pipe.execute()

    def connections(self) -> int:
        pool = self.client.connection_pool
        return len(getattr(pool, "_available_connections", [])) + len(
            getattr(pool, "_in_use_connections", [])
        )

    def close(self) -> None:
        self.client.close()


# -- agentsession ----------------------------------------------------------------------


# -- the SDK's sessions ----------------------------------------------------------------


class SQLAlchemyPostgresHandle(SQLAlchemySessions):
    """``SQLAlchemySession`` over ``postgresql+psycopg`` (psycopg 3's async connections),
    one engine (and its pool) per handle, its tables in ``schema`` via ``search_path``.
    """

    def __init__(self, dsn: str, schema: str) -> None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.ext.asyncio import create_async_engine

        _create_schema(dsn, schema)
        url = make_url(dsn).set(drivername="postgresql+psycopg")
        super().__init__(
            create_async_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        )


class RedisSDKHandle(_PerSession):
    """``agents.extensions.memory.RedisSession``: one async client per handle (what an
    app server keeps), passed to every ``RedisSession(session_id, redis_client=...,
    key_prefix=...)``, the SDK's documented form for an app-managed client."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(url)
        self.prefix = prefix

    def make(self, session_id: str) -> Any:
        from agents.extensions.memory import RedisSession

        return RedisSession(session_id, redis_client=self.client, key_prefix=self.prefix)

    async def aclose(self) -> None:
        self.sessions.clear()
        await self.client.aclose()


# -- openers: connect(url, namespace) --------------------------------------------------


def connect_raw_postgres(dsn: str, namespace: str) -> RawPostgres:
    return RawPostgres(dsn, namespace)


def connect_postgres_store(dsn: str, namespace: str) -> StoreOver:
    from agentsession import PostgresStore

    return StoreOver(PostgresStore(dsn, schema=namespace))


def connect_postgres_memory(dsn: str, namespace: str) -> MemoryOver:
    from agentsession import PostgresSessionMemory

    return MemoryOver(PostgresSessionMemory(dsn, schema=namespace))


def connect_postgres_sdk(dsn: str, namespace: str) -> SQLAlchemyPostgresHandle:
    return SQLAlchemyPostgresHandle(dsn, namespace)


def connect_raw_redis(url: str, namespace: str) -> RawRedis:
    return RawRedis(url, namespace)


def connect_redis_store(url: str, namespace: str) -> StoreOver:
    from agentsession import RedisStore

    return StoreOver(RedisStore(url, prefix=namespace))


def connect_redis_memory(url: str, namespace: str) -> MemoryOver:
    from agentsession import RedisSessionMemory

    return MemoryOver(RedisSessionMemory(url, prefix=namespace))


def connect_redis_sdk(url: str, namespace: str) -> RedisSDKHandle:
    return RedisSDKHandle(url, namespace)
