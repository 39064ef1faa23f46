"""Async session memories: any blocking ``Store`` adapted to the ``SessionMemory`` protocol.

``StoreMemory`` runs every store call in a worker thread of its own pool (see
``_threads``), so the event loop never blocks on the database, the number of threads (and
so of SQLite connections) a memory uses is bounded and they are reused by every call, and
a write that has started always finishes even if the awaiting task is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._compaction_memory import CompactionMemoryMixin
from ._history_memory import HistoryMemoryMixin
from ._ledger_memory import LedgerMemoryMixin
from ._threads import WorkerThreads
from .encryption import Encryption
from .protocol import LeaseHolder, RunRecord, SessionInfo, SessionMemory, Store
from .session import MemorySession
from .stores.history_cache import DEFAULT_LIMIT as DEFAULT_HISTORY_CACHE
from .stores.sqlite import SQLiteStore
from .window import HistoryWindow

if TYPE_CHECKING:
    import os
    from datetime import timedelta

    from psycopg_pool import ConnectionPool
    from redis import Redis
    from redis.cluster import RedisCluster

    from ._sdk import SessionSettings
    from .stores.postgres import PostgresStore
    from .stores.redis import RedisStore

__all__ = (
    "PostgresSessionMemory",
    "RedisSessionMemory",
    "SQLiteSessionMemory",
    "SessionMemory",
    "StoreMemory",
)

T = TypeVar("T")

#: Worker threads one memory may use at once (in the whole process).
DEFAULT_THREADS = 16


class StoreMemory(HistoryMemoryMixin, LedgerMemoryMixin, CompactionMemoryMixin):
    """The async face of a blocking ``Store``; what the runner and the SDK talk to.

    Every public method of the store has an async twin here with the same name,
    parameters, result and exceptions (``close`` has ``aclose``), run in a worker thread;
    an engine's own extras are on its memory (``SQLiteSessionMemory.checkpoint``).

    Thread safety: safe to share between threads and event loops, like its store. The
    blocking API for code with no event loop (a Flask view, a script) is ``.store``.

    Args:
        store: the blocking store to adapt.
        max_threads: how many store calls may run at once: the most worker threads the
            memory starts, which live until ``close()`` and keep their connections.
        window: the history a run sees by default (``HistoryWindow``); a
            ``RunConfig(history_window=...)`` overrides it. ``None`` sends everything.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_threads: int = DEFAULT_THREADS,
        window: HistoryWindow | None = None,
    ) -> None:
        if window is not None and not isinstance(window, HistoryWindow):
            raise TypeError(f"window must be a HistoryWindow or None, got {window!r}")
        if isinstance(max_threads, bool) or not isinstance(max_threads, int):
            raise TypeError(f"max_threads must be an int, got {max_threads!r}")
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self.store = store
        self.max_threads = max_threads
        self.window = window
        self._threads = WorkerThreads(max_threads)
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called: every later call raises ``StoreClosed``."""
        return self._closed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` in one of this memory's worker threads.

        A cancelled caller still waits for a call that has started, so a write is never
        left half done and never outlives ``close()``.
        """
        return await self._threads.run(func, *args, **kwargs)

    # Every public store method has an async twin of the same name and parameters, here
    # or in HistoryMemoryMixin; tests/test_memory_parity.py keeps the two sides equal.

    async def get_messages(
        self,
        session_id: str,
        limit: int | None = None,
        *,
        tool_safe: bool = True,
        include_archived: bool = False,
    ) -> list[dict[str, Any]]:
        """Return the session's newest ``limit`` messages (all if ``None``), oldest first.

        A window (``limit`` set) is tool-safe unless ``tool_safe=False``, which returns
        exactly the newest ``limit`` items (``store.get_messages``); with
        ``include_archived=True``, the history with every compaction undone. Runs in a worker
        thread, or right here when the store's reads wait for nothing
        (``store.reads_block`` is false: a SQLite file).

        Raises:
            TypeError, ValueError: a bad ``session_id``, ``limit`` or ``tool_safe``.
            StoreError: the backend failed (see ``agentsession.exceptions``).
        """
        if include_archived is not False:  # a compacted session's whole history
            return await self._call(
                self.store.get_messages,
                session_id,
                limit,
                tool_safe=tool_safe,
                include_archived=include_archived,
            )
        if not self.store.reads_block:
            # A read that waits for nothing (SQLite in WAL mode) costs only its CPU, which
            # under the GIL holds the event loop up as long in a worker thread as here;
            # the thread hop there and back would cost about as much again. Measured in
            # a 16-task Runner.run loop on one file: 13-16% more runs/s. It still yields to
            # the loop once, so a task reading in a loop does not starve the others.
            messages = self.store.get_messages(session_id, limit, tool_safe=tool_safe)
            await asyncio.sleep(0)
            return messages
        return await self._call(self.store.get_messages, session_id, limit, tool_safe=tool_safe)

    async def add_messages(
        self,
        session_id: str,
        messages: Iterable[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """Append ``messages`` to the session atomically, in order; with ``run`` (the
        runner's record of the run), add it to the usage ledger in the same step.

        Raises:
            TypeError: a message is not JSON-ready, or ``run`` is not a ``RunRecord``;
                nothing is stored.
            ValueError: a bad ``session_id``, or a ``run`` of another session.
            StoreError: the backend failed; nothing of this add is stored.
        """
        if run is None:
            await self._call(self.store.add_messages, session_id, messages)
        else:
            await self._call(self.store.add_messages, session_id, messages, run=run)

    async def pop_message(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return the newest message, or ``None`` if the session is empty.

        Raises:
            TypeError, ValueError, StoreError: as for ``add_messages``.
        """
        return await self._call(self.store.pop_message, session_id)

    async def clear_session(self, session_id: str) -> None:
        """Delete every message of the session.

        Raises:
            TypeError, ValueError, StoreError: as for ``add_messages``.
        """
        await self._call(self.store.clear_session, session_id)

    async def list_sessions(
        self, *, metadata: Mapping[str, Any] | None = None
    ) -> list[SessionInfo]:
        """Return every session (or those whose metadata holds every pair of
        ``metadata``), most recently active first (``store.list_sessions``).

        Raises:
            TypeError: a bad ``metadata`` filter.
            StoreError: the backend failed.
        """
        return await self._call(self.store.list_sessions, metadata=metadata)

    # -- the run lease (LeasingMemory) ----------------------------------------------------

    @property
    def lease_expires(self) -> bool:
        """Whether the store's leases lapse unless renewed (``LeaseStore.lease_expires``)."""
        return bool(self.store.lease_expires)

    async def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take the session's run lease for ``owner`` (``store.try_lock``); never waits.

        A store whose leases need no I/O (``lease_blocks`` false: SQLite's kernel locks)
        is called right here, on the event loop; the others in a worker thread.

        Raises:
            TypeError, ValueError: a bad ``session_id``, ``owner`` or ``lease``.
            StoreError: the backend failed.
        """
        if self.store.lease_blocks:
            return await self._call(self.store.try_lock, session_id, owner, lease)
        return self.store.try_lock(session_id, owner, lease)

    async def unlock(self, session_id: str, owner: str) -> None:
        """Give the session's run lease back, if ``owner`` holds it (``store.unlock``).

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``owner``.
            StoreError: the backend failed.
        """
        if self.store.lease_blocks:
            await self._call(self.store.unlock, session_id, owner)
        else:
            self.store.unlock(session_id, owner)

    async def lease_holder(self, session_id: str) -> LeaseHolder | None:
        """Who holds the session's run lease now (``store.lease_holder``), in a worker
        thread: ``None`` if nobody.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreError: the backend failed.
        """
        return await self._call(self.store.lease_holder, session_id)

    async def lock_and_read(
        self,
        session_id: str,
        owner: str,
        lease: float,
        limit: int | None = None,
        *,
        tool_safe: bool = True,
    ) -> list[dict[str, Any]] | None:
        """Take the run lease and read the session in one store call
        (``store.lock_and_read``): a run's first call, one thread hop at most.

        Runs right here, on the event loop, when neither the store's lease nor its reads
        wait (SQLite files); otherwise in a worker thread.

        Returns:
            The messages, or ``None`` when another owner holds the lease.

        Raises:
            TypeError, ValueError: a bad argument; nothing is taken.
            StoreError: the backend failed; the lease is not held afterwards.
        """
        store = self.store
        if store.lease_blocks or store.reads_block:
            return await self._call(
                store.lock_and_read,
                session_id,
                owner,
                lease,
                limit,
                tool_safe=tool_safe,
            )
        messages = store.lock_and_read(session_id, owner, lease, limit, tool_safe=tool_safe)
        await asyncio.sleep(0)  # as get_messages: a read on the loop still yields once
        return messages

    async def write_and_unlock(
        self,
        session_id: str,
        owner: str,
        messages: Iterable[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """Append ``messages`` (with ``run``, the run's record too) and give the run lease
        back in one store call (``store.write_and_unlock``): a run's last call, in a
        worker thread (right here when there is nothing to write and the lease needs no
        I/O).

        Raises:
            TypeError: a message is not JSON-ready; nothing is stored, the lease is
                given back.
            ValueError: a bad ``session_id`` or ``owner``.
            StoreError: the backend failed; nothing of the add is stored.
        """
        if run is not None:
            await self._call(self.store.write_and_unlock, session_id, owner, messages, run=run)
            return
        if not messages and not self.store.lease_blocks:
            self.store.write_and_unlock(session_id, owner, messages)
            return
        await self._call(self.store.write_and_unlock, session_id, owner, messages)

    def session(
        self,
        session_id: str,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        *,
        window: HistoryWindow | None = None,
    ) -> MemorySession:
        """Bind this memory to one session id, as an Agents SDK ``Session``.

        The result works with the SDK directly:
        ``agents.Runner.run(agent, "hi", session=memory.session("user_1"))``.

        Args:
            session_id: the conversation's id.
            session_settings: the SDK's settings (``limit``).
            window: overrides this memory's ``window`` for the bound session.

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``window``.
        """
        return MemorySession(
            self, session_id, session_settings, window=window if window else self.window
        )

    def close(self) -> None:
        """Close the store and every connection it opened, after the calls running now
        have finished, and end the worker threads. Later calls raise ``StoreClosed``."""
        self._closed = True
        self._threads.close()
        self.store.close()

    async def aclose(self) -> None:
        """Close the store from async code (the same as ``close()``)."""
        self.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class SQLiteSessionMemory(StoreMemory):
    """Session memory in SQLite: ``SQLiteSessionMemory()`` or ``("conversations.db")``.

    ``SQLiteSessionMemory()`` keeps everything in memory, shared by every thread that uses
    this object and lost when it is closed or the process ends. With a path, history
    persists in that file (created readable by its owner only) and may be shared by many
    threads and processes at once.

    Args:
        path: ``":memory:"`` (the default) or a database file.
        busy_timeout: seconds a write waits for other writers before ``StoreBusy``.
        synchronous: ``"FULL"`` (default) or ``"NORMAL"``; see ``SQLiteStore``.
        max_threads: how many store calls may run at once (worker threads).
        window: the history a run sees by default (``HistoryWindow``).
        ttl: delete sessions idle for longer than this (see ``SQLiteStore``).
        encryption: encrypt messages and metadata at rest (an ``Encryption``; see
            ``SQLiteStore`` and ``docs/encryption.md``).
        shared_file: add agentsession's tables to a file holding another application's
            (see ``SQLiteStore``); refused without it.
        history_cache: bytes of decoded histories kept for full reads (64 MiB by
            default, 0 for none; see ``SQLiteStore``).

    Raises:
        TypeError, ValueError: bad arguments.
        SchemaError: the file was written by a newer agentsession, is encrypted and
            ``encryption`` is not given (or holds plaintext sessions and it is), or holds
            another application's tables (without ``shared_file``).
        StoreError: the file cannot be opened as a database.
    """

    store: SQLiteStore

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "FULL",
        max_threads: int = DEFAULT_THREADS,
        window: HistoryWindow | None = None,
        ttl: timedelta | None = None,
        encryption: Encryption | None = None,
        shared_file: bool = False,
        history_cache: int = DEFAULT_HISTORY_CACHE,
    ) -> None:
        super().__init__(
            SQLiteStore(
                path,
                busy_timeout=busy_timeout,
                synchronous=synchronous,
                ttl=ttl,
                encryption=encryption,
                shared_file=shared_file,
                history_cache=history_cache,
            ),
            max_threads=max_threads,
            window=window,
        )

    async def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy the write-ahead log into the database file (``SQLiteStore.checkpoint``).

        Raises:
            ValueError: an unknown ``mode``.
            StoreClosed, StoreError: the store is closed or the database failed.
        """
        await self._call(self.store.checkpoint, mode)


class PostgresSessionMemory(StoreMemory):
    """Session memory in PostgreSQL, shared by every app server: ``("postgresql://...")``.

    Needs the ``postgres`` extra (``pip install 'agentsession[postgres]'``). See
    ``PostgresStore`` for the schema, the pool and what each call promises.

    Args:
        conninfo: a libpq connection string or URL, or a ``psycopg_pool.ConnectionPool``
            of your own (then the pool's sizes are yours, and ``close()`` leaves it open).
        schema: the PostgreSQL schema holding agentsession's tables (created if missing).
        min_size, max_size: the pool's size, when the store makes the pool.
        pool_timeout: seconds a call waits for a free connection before ``StoreBusy``.
        ttl: delete sessions idle for longer than this.
        max_threads: how many store calls may run at once (worker threads); keep it at or
            below ``max_size`` so threads do not queue for connections.
        window: the history a run sees by default (``HistoryWindow``).
        encryption: encrypt messages and metadata at rest (an ``Encryption``; see
            ``PostgresStore`` and ``docs/encryption.md``).

    Raises:
        MissingDependencyError: the ``postgres`` extra is not installed.
        TypeError, ValueError: bad arguments.
        SchemaError: as ``PostgresStore`` raises it (encrypted, or not, against
            ``encryption``).
        StoreError: the server cannot be reached or the schema cannot be set up.
    """

    store: PostgresStore

    def __init__(
        self,
        conninfo: str | ConnectionPool,
        *,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = 10,
        pool_timeout: float = 30.0,
        ttl: timedelta | None = None,
        max_threads: int = 10,
        window: HistoryWindow | None = None,
        encryption: Encryption | None = None,
    ) -> None:
        from .stores.postgres import PostgresStore

        super().__init__(
            PostgresStore(
                conninfo,
                schema=schema,
                min_size=min_size,
                max_size=max_size,
                pool_timeout=pool_timeout,
                ttl=ttl,
                encryption=encryption,
            ),
            max_threads=max_threads,
            window=window,
        )


class RedisSessionMemory(StoreMemory):
    """Session memory in Redis: ``("redis://localhost:6379/0")``, or a Redis Cluster
    (``"redis://node:7000/?cluster=true"``).

    Needs the ``redis`` extra (``pip install 'agentsession[redis]'``). See ``RedisStore``
    for the key layout, the TTL and the features Redis does not offer.

    Args:
        url: a ``redis://`` / ``rediss://`` / ``unix://`` URL (``?cluster=true``
            for a Redis Cluster), or a ``redis.Redis`` or
            ``redis.cluster.RedisCluster`` client of your own (``close()`` then leaves
            it open).
        prefix: the start of every key agentsession writes (no braces).
        ttl: each session expires this long after its last write (Redis expiry).
        max_threads: how many store calls may run at once (worker threads).
        window: the history a run sees by default (``HistoryWindow``).
        encryption: encrypt messages and metadata at rest (an ``Encryption``; see
            ``RedisStore`` and ``docs/encryption.md``).

    Raises:
        MissingDependencyError: the ``redis`` extra is not installed.
        TypeError, ValueError: bad arguments.
        SchemaError: as ``RedisStore`` raises it (encrypted, or not, against
            ``encryption``).
        StoreError: the server cannot be reached.
    """

    store: RedisStore

    def __init__(
        self,
        url: str | Redis | RedisCluster,
        *,
        prefix: str = "agentsession",
        ttl: timedelta | None = None,
        max_threads: int = DEFAULT_THREADS,
        window: HistoryWindow | None = None,
        encryption: Encryption | None = None,
    ) -> None:
        from .stores.redis import RedisStore

        super().__init__(
            RedisStore(url, prefix=prefix, ttl=ttl, encryption=encryption),
            max_threads=max_threads,
            window=window,
        )
