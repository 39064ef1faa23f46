"""Fixtures shared by the whole suite: every memory and store under test, one list each.

The conformance tests in ``tests/conformance/`` take ``memory`` or ``store`` and so run
once per backend; a backend joins the suite by adding one entry to ``MEMORIES`` /
``STORES`` and a branch to ``make_store``. PostgreSQL and Redis stores run against the
local servers (see ``tests/services.py``), each test in a schema or key prefix of its own.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import agents
import pytest

from agentsession import (
    Agent,
    MemorySession,
    RunConfig,
    Runner,
    SQLiteSessionMemory,
    SQLiteStore,
    StoreMemory,
)

STORES = [
    pytest.param("sqlite-memory", id="sqlite-memory"),
    pytest.param("sqlite-file", id="sqlite-file"),
    pytest.param("postgres", id="postgres"),
    pytest.param("redis", id="redis"),
    pytest.param("redis-cluster", id="redis-cluster"),
]

#: The engine of each store kind (what engine-specific expectations are keyed by).
ENGINES = {
    "sqlite-memory": "sqlite",
    "sqlite-file": "sqlite",
    "postgres": "postgres",
    "redis": "redis",
    "redis-cluster": "redis",
}

MEMORIES = [*STORES, pytest.param("protocol-only", id="protocol-only")]

RUNNER_METHODS = ["run", "run_sync", "run_streamed"]


class DictMemory:
    """A user's own memory: only the spec's three async methods, no base class."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[dict[str, Any]]] = {}
        self.lock = asyncio.Lock()

    async def get_messages(self, session_id: str) -> list[dict[str, Any]]:
        return list(self.sessions.get(session_id, []))

    async def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        self.sessions.setdefault(session_id, []).extend(messages)

    async def clear_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)


def make_store(kind: str, tmp_path: Path, cleanups: list[Callable[[], None]] | None = None) -> Any:
    """A new, empty store of ``kind``.

    PostgreSQL and Redis stores get a schema / key prefix of their own; the callable that
    removes it is appended to ``cleanups`` (run it after closing the store). Without
    ``cleanups`` the data is left on the server.
    """
    if kind == "sqlite-memory":
        return SQLiteStore()
    if kind == "sqlite-file":
        return SQLiteStore(tmp_path / f"sessions-{uuid.uuid4().hex[:8]}.db")
    if kind == "postgres":
        from agentsession.stores.postgres import PostgresStore
        from tests import services

        schema = services.unique_name("agentsession_test")
        store = PostgresStore(services.postgres_dsn(), schema=schema)
        if cleanups is not None:
            cleanups.append(lambda: services.drop_postgres_schema(schema))
        return store
    if kind == "redis":
        from agentsession.stores.redis import RedisStore
        from tests import services

        prefix = services.unique_name("agentsession-test")
        store = RedisStore(services.redis_url(), prefix=prefix)
        if cleanups is not None:
            cleanups.append(lambda: services.drop_redis_prefix(prefix))
        return store
    if kind == "redis-cluster":
        from agentsession.stores.redis import RedisStore
        from tests import services

        url, prefix = services.redis_cluster_url(), services.unique_name("agentsession-test")
        store = RedisStore(url, prefix=prefix)
        if cleanups is not None:
            cleanups.append(lambda: services.drop_redis_prefix(prefix, url))
        return store
    raise ValueError(f"unknown store kind {kind!r}")


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """``store_factory(kind)`` makes stores that are closed and removed after the test."""
    made: list[Any] = []
    cleanups: list[Callable[[], None]] = []

    def factory(kind: str) -> Any:
        store = make_store(kind, tmp_path, cleanups)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()
    for cleanup in cleanups:
        cleanup()


@pytest.fixture
def anyio_backend() -> str:
    # The Agents SDK runs on asyncio only.
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    agents.set_tracing_disabled(True)
    yield


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The kind of store this test runs on (one of ``STORES``)."""
    return str(request.param)


@pytest.fixture
def store(store_kind: str, store_factory: Callable[[str], Any]) -> Any:
    return store_factory(store_kind)


@pytest.fixture(params=MEMORIES)
def memory(request: pytest.FixtureRequest, store_factory: Callable[[str], Any]) -> Iterator[Any]:
    if request.param == "protocol-only":
        yield DictMemory()
        return
    memory = StoreMemory(store_factory(request.param))
    yield memory
    memory.close()


@pytest.fixture(params=STORES)
def store_memory(
    request: pytest.FixtureRequest, store_factory: Callable[[str], Any]
) -> Iterator[StoreMemory]:
    """An agentsession memory (``StoreMemory``) over each kind of store."""
    memory = StoreMemory(store_factory(request.param))
    yield memory
    memory.close()


@pytest.fixture
def sqlite_memory(tmp_path: Path) -> Iterator[SQLiteSessionMemory]:
    memory = SQLiteSessionMemory(tmp_path / "sessions.db")
    yield memory
    memory.close()


def bound(memory: Any, session_id: str) -> Any:
    """The SDK ``Session`` for ``memory``, as the runner builds it."""
    session = getattr(memory, "session", None)
    return session(session_id) if session is not None else MemorySession(memory, session_id)


@pytest.fixture(scope="session")
def _responses_server() -> Iterator[Any]:
    """One loopback Responses API server for the whole run, set as the default endpoint.

    Session-scoped because the default OpenAI client (like the SDK's) reads
    ``OPENAI_BASE_URL`` once per event loop, and ``run_sync``'s loop lives for the process.
    """
    from tests.responses_server import ResponsesServer

    with ResponsesServer(check_pairing=True) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_BASE_URL", server.base_url)
        mp.setenv("OPENAI_API_KEY", "test-key")
        yield server


@pytest.fixture
def model_server(_responses_server: Any) -> Iterator[Any]:
    """The loopback server with the default echo responder and an empty request log view.

    ``model_server.new_requests()`` returns the bodies received since the test started.
    """
    from tests.responses_server import echo_responder

    server = _responses_server
    start = len(server.requests)
    server.responder = echo_responder
    server.new_requests = lambda: server.requests[start:]
    yield server
    server.responder = echo_responder


def run_in_threads(count: int, work: Callable[[int], object]) -> None:
    """Run ``work(0)`` ... ``work(count - 1)`` in threads released together; re-raise the
    first error any of them raised, after all have finished."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def target(n: int) -> None:
        try:
            barrier.wait()
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


async def run_with(method: str, agent: Agent[Any], text: str, config: RunConfig) -> Any:
    """Run one turn through the named ``Runner`` method and return its final output.

    ``run_sync`` is called inside the test's running event loop, where the SDK's own
    ``run_sync`` raises; a streamed run must stream its text as deltas.
    """
    if method == "run":
        return (await Runner.run(agent, text, run_config=config)).final_output
    if method == "run_sync":
        return Runner.run_sync(agent, text, run_config=config).final_output
    result = Runner.run_streamed(agent, text, run_config=config)
    deltas = [
        event
        async for event in result.stream_events()
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]
    assert deltas, "a streamed run should stream text deltas"
    return result.final_output
