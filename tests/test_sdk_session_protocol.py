"""The Agents SDK's own session test cases, ported to run against our bound sessions.

Every case here exercises only the SDK's public ``agents.memory.Session`` protocol
(``get_items`` with and without ``limit``, ``add_items``, ``pop_item``, ``clear_session``,
``session_settings``) or the SDK's own ``agents.Runner`` (``run`` / ``run_sync`` /
``run_streamed``) given ``session=memory.session("id")``. Each runs once per backend:
``SQLiteSessionMemory()`` (in memory), ``SQLiteSessionMemory(tmp_path / "s.db")``, a
``MemorySession`` over ``ProtocolOnlyMemory`` below (only the spec's three async methods),
``RedisSessionMemory`` on the test Redis server (a key prefix of its own per test), and
``PostgresSessionMemory`` on the test PostgreSQL server (a schema of its own per test).
The SDK tests' private helper ``tests.test_responses.get_text_message`` is replaced by
``agents.testing.assistant_message``, ``model.calls[-1].input`` by
``model.last_call.input`` and ``asyncio`` by ``anyio``. A few assertions were added where
the SDK's were too weak to fail on a broken session (each marked "Added:"); none was
removed or loosened. The cases with a corrupt stored row write it into the backend
itself (``_add_corrupt``), where the SDK's write it through ``SQLiteSession``'s private
connection; the closed-session case closes the memory (a bound session has no
``close``) and expects ``StoreClosed``, where the SDK's ``SQLiteSession`` raises
``RuntimeError``.

Checked against: repository openai/openai-agents-python at commit
7f7a44f8dc0650296bd5ab6c745c9bcbaa6ac3b7 (SDK 0.22.0; the newest version of both files
on its main branch, last changed by commit 05d6850da5da7ae5efe0e89e85660e5878547ba4).
``SDK_CASES`` below lists every case of ``tests/memory/test_session.py`` and
``tests/memory/test_session_limit.py`` at that commit, with the test here that ports it or
the reason it is left out; the tests at the end of this module keep that list, this
docstring and the module in step.

Left out, and why (all inspect or drive the SDK's own ``SQLiteSession`` class, not the
protocol; none has a public half beyond what is noted):

* ``test_await_mutation_cancellation_hides_later_failure_without_loop_error``: the SDK's
  private ``agents.memory.sqlite_session._await_mutation`` helper; no session.
* ``test_sqlite_session_close_closes_worker_thread_connections``: inspects
  ``SQLiteSession._connections`` and sqlite3 connection objects.
* ``test_sqlite_session_file_lock_is_shared_across_instances``: its ``_lock`` /
  ``_file_lock_counts`` / ``_file_locks`` assertions are SQLiteSession internals; its
  public half (two sessions of one database written concurrently stay separate) is
  ported as ``test_sessions_sharing_one_database_written_concurrently``.
* ``test_sqlite_session_failed_add_items_releases_write_lock``: its probe of the SDK's
  ``agent_sessions`` table and write lock is SQLiteSession internals; its public half (a
  failed ``add_items`` raises ``TypeError``, stores nothing, and the session stays
  usable) is ported as ``test_failed_add_items_stores_nothing_and_session_stays_usable``.
* ``test_session_settings_resolve``: tests ``SessionSettings.resolve()`` alone; no session
  is involved.
* ``test_sqlite_session_failed_clear_session_rolls_back``,
  ``test_sqlite_session_failed_pop_item_releases_write_lock``: drop the SDK's tables
  behind the session's back and inspect ``SQLiteSession._connections``.
* ``test_sqlite_session_rollback_failure_evicts_connection``,
  ``test_sqlite_session_close_retries_quarantined_connection``,
  ``test_sqlite_session_post_commit_cancellation_propagates_after_known_outcome``: inject
  a sqlite3 connection subclass through ``SQLiteSession._get_connection`` /
  ``_connections_lock`` / ``_quarantined_connections``.

Our own cases, not in those two files at that commit (``OWN_CASES`` names each):

* ``test_session_limit_negative_returns_empty``: the SDK's pull request #3663 (head
  commit 4ab9228b2b489b140bda1659914e713f2fa3cddd), not merged at the commit above.
* ``test_runner_preserves_legacy_session_call_shapes``: modelled on the case of that name
  in ``tests/memory/test_session_context_wrapper.py`` (which uses a session class of its
  own): our sessions do not take the runner's optional ``wrapper=`` keyword, so a run
  with a context must call them the legacy way. The rest of that file is about sessions
  that opt into ``wrapper=``, the SDK's private helpers and its compaction session.
* ``test_get_items_respects_limit_without_changing_stored_history``,
  ``test_pop_item_without_pop_message_raises_not_implemented``: ours.

Pop cases need a ``pop_message``; the protocol-only memory has none, so they run on the
store backends (SQLite, Redis, PostgreSQL) and
``test_pop_item_without_pop_message_raises_not_implemented`` checks the protocol-only
memory instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agents
import anyio
import anyio.to_thread
import pytest
from agents import Agent, RunConfig, Runner
from agents.memory import Session, SessionSettings
from agents.testing import ScriptedModel, assistant_message

from agentsession import (
    MemorySession,
    PostgresSessionMemory,
    PostgresStore,
    RedisSessionMemory,
    RedisStore,
    SQLiteSessionMemory,
    SQLiteStore,
    StoreClosed,
    StoreMemory,
)
from tests import services

pytestmark = pytest.mark.anyio

RUNNER_METHODS = ["run", "run_sync", "run_streamed"]


# --------------------------------------------------------------------------------------
# Backends under test
# --------------------------------------------------------------------------------------


class ProtocolOnlyMemory:
    """A user's own memory: only the spec's three async methods, backed by a dict."""

    def __init__(self) -> None:
        self._sessions: dict[str, list[dict[str, Any]]] = {}

    async def get_messages(self, session_id: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self._sessions.get(session_id, []))

    async def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        self._sessions.setdefault(session_id, []).extend(copy.deepcopy(list(messages)))

    async def clear_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)


@dataclass
class Backend:
    """One memory under test and how to bind a session of it."""

    memory: Any
    #: Removes what the backend left on a server (its Redis key prefix or PostgreSQL
    #: schema), after close.
    cleanup: Callable[[], None] | None = None

    def session(
        self,
        session_id: str,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> Any:
        """A bound session (typed ``Any`` so items read as plain dicts, as in the SDK tests)."""
        if isinstance(self.memory, StoreMemory):
            # Exactly what a user hands to the SDK: memory.session("id").
            session: Session = self.memory.session(session_id, session_settings)
        else:
            session = MemorySession(self.memory, session_id, session_settings)
        assert isinstance(session, Session)  # the SDK's runtime-checkable protocol
        return session


ALL_BACKENDS = ["sqlite-memory", "sqlite-file", "protocol-only", "redis", "postgres"]
POP_BACKENDS = ["sqlite-memory", "sqlite-file", "redis", "postgres"]


def _make_backend(kind: str, tmp_path: Path) -> Backend:
    if kind == "sqlite-memory":
        return Backend(SQLiteSessionMemory())
    if kind == "sqlite-file":
        return Backend(SQLiteSessionMemory(tmp_path / "s.db"))
    if kind == "protocol-only":
        return Backend(ProtocolOnlyMemory())
    if kind == "redis":
        prefix = services.unique_name("agentsession-test")
        memory = RedisSessionMemory(services.redis_url(), prefix=prefix)
        return Backend(memory, cleanup=lambda: services.drop_redis_prefix(prefix))
    if kind == "postgres":
        schema = services.unique_name("agentsession_test")
        memory = PostgresSessionMemory(services.postgres_dsn(), schema=schema)
        return Backend(memory, cleanup=lambda: services.drop_postgres_schema(schema))
    raise ValueError(kind)


def _close(backend: Backend) -> None:
    if isinstance(backend.memory, StoreMemory):
        backend.memory.close()
    if backend.cleanup is not None:
        backend.cleanup()


CORRUPT = "not valid json {{{"


async def _add_corrupt(backend: Backend, session: Any) -> None:
    """Store one row that is not JSON at the end of ``session``, as the SDK's tests do
    through ``SQLiteSession``'s own connection: a placeholder item is added, then its
    stored text overwritten in the backend itself (no public method stores one)."""
    await session.add_items([{"role": "user", "content": "placeholder"}])
    store = backend.memory.store
    sid = session.session_id
    if isinstance(store, SQLiteStore):
        store._write(
            lambda conn: conn.execute(
                "UPDATE agentsession_messages SET message = ? WHERE session = "
                "(SELECT id FROM agentsession_sessions WHERE session_id = ?) AND seq = "
                "(SELECT message_count FROM agentsession_sessions WHERE session_id = ?)",
                (CORRUPT, sid, sid),
            )
        )
    elif isinstance(store, PostgresStore):
        import psycopg

        with psycopg.connect(services.postgres_dsn(), autocommit=True) as conn:
            table = f'"{store.schema}"'
            conn.execute(
                f"UPDATE {table}.agentsession_messages SET message = %s WHERE session = "
                f"(SELECT id FROM {table}.agentsession_sessions WHERE session_id = %s) "
                f"AND seq = (SELECT message_count FROM {table}.agentsession_sessions "
                "WHERE session_id = %s)",
                (CORRUPT, sid, sid),
            )
    else:
        import redis

        assert isinstance(store, RedisStore)
        client = redis.Redis.from_url(services.redis_url())
        client.lset(f"{store.prefix}:{{{sid}}}:messages", -1, f"0 {CORRUPT}")
        client.close()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = _make_backend(request.param, tmp_path)
    yield made
    _close(made)


@pytest.fixture(params=POP_BACKENDS)
def pop_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The backends whose memory has ``pop_message``, so ``pop_item`` works."""
    made = _make_backend(request.param, tmp_path)
    yield made
    _close(made)


@pytest.fixture(autouse=True)
def _tracing_disabled() -> Iterator[None]:
    agents.set_tracing_disabled(True)
    yield


# --------------------------------------------------------------------------------------
# Helpers (the SDK tests' run_agent_async, on anyio and ScriptedModel)
# --------------------------------------------------------------------------------------


def _run_sync_wrapper(agent: Agent[Any], input_data: Any, **kwargs: Any) -> Any:
    """Runner.run_sync in a worker thread with its own event loop, as the SDK tests do."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return Runner.run_sync(agent, input_data, **kwargs)
    finally:
        loop.close()
        asyncio.set_event_loop(None)


async def run_agent_async(
    runner_method: str, agent: Agent[Any], input_data: Any, **kwargs: Any
) -> Any:
    if runner_method == "run":
        return await Runner.run(agent, input_data, **kwargs)
    if runner_method == "run_sync":
        return await anyio.to_thread.run_sync(
            lambda: _run_sync_wrapper(agent, input_data, **kwargs)
        )
    if runner_method == "run_streamed":
        result = Runner.run_streamed(agent, input_data, **kwargs)
        async for _event in result.stream_events():
            pass
        return result
    raise ValueError(f"Unknown runner method: {runner_method}")


def last_input(model: ScriptedModel) -> list[Any]:
    call = model.last_call
    assert call is not None, "the model was never called"
    return list(call.input)


def text_of(item: Any) -> Any:
    """The text of an input item: a user's string content or an assistant's output_text."""
    content = item.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content


# --------------------------------------------------------------------------------------
# tests/memory/test_session.py
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_basic_functionality_parametrized(
    backend: Backend, runner_method: str
) -> None:
    session = backend.session("test_session_123")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    model.enqueue([assistant_message("San Francisco")])
    result1 = await run_agent_async(
        runner_method, agent, "What city is the Golden Gate Bridge in?", session=session
    )
    assert result1.final_output == "San Francisco"

    model.enqueue([assistant_message("California")])
    result2 = await run_agent_async(runner_method, agent, "What state is it in?", session=session)
    assert result2.final_output == "California"

    seen = last_input(model)
    assert len(seen) > 1
    # Added: the exact history, in order.
    assert [text_of(item) for item in seen] == [
        "What city is the Golden Gate Bridge in?",
        "San Francisco",
        "What state is it in?",
    ]


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_with_explicit_instance_parametrized(
    backend: Backend, runner_method: str
) -> None:
    session = backend.session("test_session_456")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    model.enqueue([assistant_message("Hello")])
    result1 = await run_agent_async(runner_method, agent, "Hi there", session=session)
    assert result1.final_output == "Hello"

    model.enqueue([assistant_message("I remember you said hi")])
    result2 = await run_agent_async(
        runner_method, agent, "Do you remember what I said?", session=session
    )
    assert result2.final_output == "I remember you said hi"
    # Added: the second turn saw the first, and both turns were stored.
    assert [text_of(item) for item in last_input(model)] == [
        "Hi there",
        "Hello",
        "Do you remember what I said?",
    ]
    assert [text_of(item) for item in await session.get_items()] == [
        "Hi there",
        "Hello",
        "Do you remember what I said?",
        "I remember you said hi",
    ]


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_disabled_parametrized(runner_method: str) -> None:
    """The control case: no session, no history (needs no backend)."""
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    model.enqueue([assistant_message("Hello")])
    result1 = await run_agent_async(runner_method, agent, "Hi there")
    assert result1.final_output == "Hello"

    model.enqueue([assistant_message("I don't remember")])
    result2 = await run_agent_async(runner_method, agent, "Do you remember what I said?")
    assert result2.final_output == "I don't remember"

    assert len(last_input(model)) == 1


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_different_sessions_parametrized(
    backend: Backend, runner_method: str
) -> None:
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    session_1 = backend.session("session_1")
    model.enqueue([assistant_message("I like cats")])
    result1 = await run_agent_async(runner_method, agent, "I like cats", session=session_1)
    assert result1.final_output == "I like cats"

    session_2 = backend.session("session_2")
    model.enqueue([assistant_message("I like dogs")])
    result2 = await run_agent_async(runner_method, agent, "I like dogs", session=session_2)
    assert result2.final_output == "I like dogs"
    # Added: session 2 started empty.
    assert [text_of(item) for item in last_input(model)] == ["I like dogs"]

    model.enqueue([assistant_message("Yes, you mentioned cats")])
    result3 = await run_agent_async(
        runner_method, agent, "What did I say I like?", session=session_1
    )
    assert result3.final_output == "Yes, you mentioned cats"
    # Added: session 1 remembers cats and nothing of session 2.
    assert [text_of(item) for item in last_input(model)] == [
        "I like cats",
        "I like cats",
        "What did I say I like?",
    ]


async def test_sqlite_session_memory_direct(backend: Backend) -> None:
    session = backend.session("direct_test")
    items: list[Any] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
    ]

    await session.add_items(items)
    retrieved = await session.get_items()

    assert len(retrieved) == 2
    assert retrieved[0].get("role") == "user"
    assert retrieved[0].get("content") == "Hello"
    assert retrieved[1].get("role") == "assistant"
    assert retrieved[1].get("content") == "Hi there!"

    await session.clear_session()
    assert len(await session.get_items()) == 0


async def test_sqlite_session_memory_pop_item(pop_backend: Backend) -> None:
    session = pop_backend.session("pop_test")

    assert await session.pop_item() is None

    items: list[Any] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
        {"role": "user", "content": "How are you?"},
    ]
    await session.add_items(items)
    assert len(await session.get_items()) == 3

    popped = await session.pop_item()
    assert popped is not None
    assert popped.get("role") == "user"
    assert popped.get("content") == "How are you?"

    retrieved_after_pop = await session.get_items()
    assert len(retrieved_after_pop) == 2
    assert retrieved_after_pop[-1].get("content") == "Hi there!"

    popped2 = await session.pop_item()
    assert popped2 is not None
    assert popped2.get("role") == "assistant"
    assert popped2.get("content") == "Hi there!"

    popped3 = await session.pop_item()
    assert popped3 is not None
    assert popped3.get("role") == "user"
    assert popped3.get("content") == "Hello"

    assert await session.pop_item() is None
    assert len(await session.get_items()) == 0


async def test_pop_item_without_pop_message_raises_not_implemented() -> None:
    """Stands in for the pop cases on the protocol-only memory, which has no pop_message."""
    session = MemorySession(ProtocolOnlyMemory(), "pop_test")
    items: list[Any] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
    ]
    await session.add_items(items)
    with pytest.raises(NotImplementedError, match="pop_message"):
        await session.pop_item()
    assert await session.get_items() == items


async def test_session_memory_pop_different_sessions(pop_backend: Backend) -> None:
    session_1 = pop_backend.session("session_1")
    session_2 = pop_backend.session("session_2")

    await session_1.add_items([{"role": "user", "content": "Session 1 message"}])
    await session_2.add_items(
        [
            {"role": "user", "content": "Session 2 message 1"},
            {"role": "user", "content": "Session 2 message 2"},
        ]
    )

    popped = await session_2.pop_item()
    assert popped is not None
    assert popped.get("content") == "Session 2 message 2"

    session_1_items = await session_1.get_items()
    assert len(session_1_items) == 1
    assert session_1_items[0].get("content") == "Session 1 message"

    session_2_items = await session_2.get_items()
    assert len(session_2_items) == 1
    assert session_2_items[0].get("content") == "Session 2 message 1"


async def test_closed_memory_rejects_empty_add_items(pop_backend: Backend) -> None:
    """add_items([]) must not bypass the closed check through the empty-list fast path."""
    session = pop_backend.session("closed_empty_add_test")
    pop_backend.memory.close()

    with pytest.raises(StoreClosed, match="is closed"):
        await session.add_items([])
    # Added: the same as a non-empty add.
    with pytest.raises(StoreClosed, match="is closed"):
        await session.add_items([{"role": "user", "content": "x"}])


async def test_pop_item_skips_corrupt_most_recent(pop_backend: Backend) -> None:
    """pop_item skips corrupt newest rows and returns the next valid item."""
    session = pop_backend.session("pop_corrupt")

    valid_item = {"role": "user", "content": "valid"}
    await session.add_items([valid_item])
    await _add_corrupt(pop_backend, session)

    assert await session.pop_item() == valid_item
    assert await session.get_items() == []


async def test_pop_item_returns_none_after_dropping_only_corrupt_rows(
    pop_backend: Backend,
) -> None:
    """pop_item removes corrupt rows and returns None when no valid items remain."""
    session = pop_backend.session("pop_only_corrupt")
    await _add_corrupt(pop_backend, session)

    assert await session.pop_item() is None
    assert await session.get_items() == []


async def test_get_items_limit_skips_corrupt_newest_rows(pop_backend: Backend) -> None:
    """limit counts valid items, expanding past corrupt newest rows."""
    session = pop_backend.session("limit_corrupt")
    await session.add_items(
        [
            {"role": "user", "content": "valid 0"},
            {"role": "assistant", "content": "valid 1"},
            {"role": "user", "content": "valid 2"},
        ]
    )
    await _add_corrupt(pop_backend, session)

    # Newest row is corrupt; limit=2 should still return the two latest valid items.
    limited = await session.get_items(limit=2)
    assert [item.get("content") for item in limited] == ["valid 1", "valid 2"]
    # Added: several corrupt rows, more than the limit, among the newest.
    for _ in range(3):
        await _add_corrupt(pop_backend, session)
    limited = await session.get_items(limit=2)
    assert [item.get("content") for item in limited] == ["valid 1", "valid 2"]
    assert [item.get("content") for item in await session.get_items(limit=5)] == [
        "valid 0",
        "valid 1",
        "valid 2",
    ]


async def test_get_items_session_settings_limit_skips_corrupt_rows(pop_backend: Backend) -> None:
    """session_settings.limit also counts valid items when newest rows are corrupt."""
    session = pop_backend.session("settings_limit_corrupt", SessionSettings(limit=2))
    await session.add_items(
        [
            {"role": "user", "content": "valid 0"},
            {"role": "assistant", "content": "valid 1"},
            {"role": "user", "content": "valid 2"},
        ]
    )
    await _add_corrupt(pop_backend, session)

    limited = await session.get_items()
    assert [item.get("content") for item in limited] == ["valid 1", "valid 2"]


async def test_sqlite_session_get_items_with_limit(backend: Backend) -> None:
    session = backend.session("count_test")
    items: list[Any] = [
        {"role": "user", "content": "Message 1"},
        {"role": "assistant", "content": "Response 1"},
        {"role": "user", "content": "Message 2"},
        {"role": "assistant", "content": "Response 2"},
        {"role": "user", "content": "Message 3"},
        {"role": "assistant", "content": "Response 3"},
    ]
    await session.add_items(items)

    all_items = await session.get_items()
    assert len(all_items) == 6
    assert all_items[0].get("content") == "Message 1"
    assert all_items[-1].get("content") == "Response 3"

    latest_2 = await session.get_items(limit=2)
    assert len(latest_2) == 2
    assert latest_2[0].get("content") == "Message 3"
    assert latest_2[1].get("content") == "Response 3"

    latest_4 = await session.get_items(limit=4)
    assert len(latest_4) == 4
    assert latest_4[0].get("content") == "Message 2"
    assert latest_4[1].get("content") == "Response 2"
    assert latest_4[2].get("content") == "Message 3"
    assert latest_4[3].get("content") == "Response 3"

    latest_10 = await session.get_items(limit=10)
    assert len(latest_10) == 6
    assert latest_10[0].get("content") == "Message 1"
    assert latest_10[-1].get("content") == "Response 3"

    assert len(await session.get_items(limit=0)) == 0


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_appends_list_input_by_default(
    backend: Backend, runner_method: str
) -> None:
    session = backend.session("test_validation_parametrized")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    initial_history: list[Any] = [
        {"role": "user", "content": "Earlier message"},
        {"role": "assistant", "content": "Saved reply"},
    ]
    await session.add_items(initial_history)

    list_input = [{"role": "user", "content": "Test message"}]
    model.enqueue([assistant_message("This should run")])
    await run_agent_async(runner_method, agent, list_input, session=session)

    assert last_input(model) == initial_history + list_input


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_callback_prepared_input(backend: Backend, runner_method: str) -> None:
    session = backend.session("session_1")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    initial_history: list[Any] = [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi, I'm here to assist you."},
    ]
    await session.add_items(initial_history)

    def filter_assistant_messages(history: list[Any], new_input: list[Any]) -> list[Any]:
        return [item for item in history if item["role"] == "user"] + new_input

    new_turn_input = [{"role": "user", "content": "What your name?"}]
    model.enqueue([assistant_message("I'm gpt-4o")])
    await run_agent_async(
        runner_method,
        agent,
        new_turn_input,
        session=session,
        run_config=RunConfig(session_input_callback=filter_assistant_messages),
    )

    expected_model_input = [initial_history[0], new_turn_input[0]]
    assert len(last_input(model)) == 2
    assert last_input(model) == expected_model_input


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_callback_repeating_history_does_not_grow_session(
    backend: Backend, runner_method: str
) -> None:
    session = backend.session("session_repeat")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    def repeat_first(history: list[Any], new_input: list[Any]) -> list[Any]:
        if not history:
            return new_input
        return history + [history[0]] + new_input

    for turn in range(3):
        model.enqueue([assistant_message(f"assistant {turn}")])
        await run_agent_async(
            runner_method,
            agent,
            f"user {turn}",
            session=session,
            run_config=RunConfig(session_input_callback=repeat_first),
        )

    stored = await session.get_items()
    user_messages = [item for item in stored if item.get("role") == "user"]
    assert [item.get("content") for item in user_messages] == ["user 0", "user 1", "user 2"]
    assert len(stored) == 6
    # Added: the whole stored history, in order, survives a fresh binding.
    assert [text_of(item) for item in await backend.session("session_repeat").get_items()] == [
        "user 0",
        "assistant 0",
        "user 1",
        "assistant 1",
        "user 2",
        "assistant 2",
    ]


async def test_sqlite_session_unicode_content(backend: Backend) -> None:
    session = backend.session("unicode_test")
    items: list[Any] = [
        {"role": "user", "content": "こんにちは"},
        {"role": "assistant", "content": "😊👍"},
        {"role": "user", "content": "Привет"},
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert retrieved[0].get("content") == "こんにちは"
    assert retrieved[1].get("content") == "😊👍"
    assert retrieved[2].get("content") == "Привет"


async def test_sqlite_session_special_characters_and_sql_injection(backend: Backend) -> None:
    session = backend.session("special_chars_test")
    items: list[Any] = [
        {"role": "user", "content": "O'Reilly"},
        {"role": "assistant", "content": "DROP TABLE sessions;"},
        {"role": "user", "content": '"SELECT * FROM users WHERE name = "admin";"'},
        {"role": "assistant", "content": "Robert'); DROP TABLE students;--"},
        {"role": "user", "content": "Normal message"},
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert len(retrieved) == len(items)
    assert retrieved[0].get("content") == "O'Reilly"
    assert retrieved[1].get("content") == "DROP TABLE sessions;"
    assert retrieved[2].get("content") == '"SELECT * FROM users WHERE name = "admin";"'
    assert retrieved[3].get("content") == "Robert'); DROP TABLE students;--"
    assert retrieved[4].get("content") == "Normal message"


async def test_sqlite_session_concurrent_access(backend: Backend) -> None:
    """Ten threads, each with its own event loop, add to one session object."""
    session = backend.session("concurrent_test")
    items: list[Any] = [{"role": "user", "content": f"Message {i}"} for i in range(10)]

    def add_item(item: Any) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(session.add_items([item]))
        finally:
            loop.close()
            asyncio.set_event_loop(None)

    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as executor:
        # list() so that an exception in a worker fails the test (the SDK's drops them).
        list(executor.map(add_item, items))

    retrieved = await session.get_items()
    contents = {item.get("content") for item in retrieved}
    assert contents == {f"Message {i}" for i in range(10)}
    assert len(retrieved) == 10  # Added: nothing stored twice.


async def test_sessions_sharing_one_database_written_concurrently(backend: Backend) -> None:
    """The public half of test_sqlite_session_file_lock_is_shared_across_instances."""
    session_1 = backend.session("session_1")
    session_2 = backend.session("session_2")

    async with anyio.create_task_group() as tg:
        tg.start_soon(session_1.add_items, [{"role": "user", "content": "session_1"}])
        tg.start_soon(session_2.add_items, [{"role": "user", "content": "session_2"}])

    assert [item.get("content") for item in await session_1.get_items()] == ["session_1"]
    assert [item.get("content") for item in await session_2.get_items()] == ["session_2"]


async def test_failed_add_items_stores_nothing_and_session_stays_usable(backend: Backend) -> None:
    """The public half of test_sqlite_session_failed_add_items_releases_write_lock."""
    session = backend.session("rollback_test")

    unserializable: Any = {"role": "user", "content": object()}
    with pytest.raises(TypeError):
        await session.add_items([unserializable])
    # Added: nothing of the failed call is stored (the SDK checks its own table instead).
    assert await session.get_items() == []

    # The session must remain usable after the failure.
    await session.add_items([{"role": "user", "content": "after failure"}])
    assert [item.get("content") for item in await session.get_items()] == ["after failure"]


async def test_session_add_items_exception_propagates_in_streamed(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An add_items failure reaches the caller of run_streamed instead of hanging it."""
    session = backend.session("test_exception_session")

    async def _failing_add_items(_items: list[Any]) -> None:
        raise RuntimeError("Simulated session.add_items failure")

    monkeypatch.setattr(session, "add_items", _failing_add_items)

    model = ScriptedModel([[assistant_message("This should not be reached")]])
    agent = Agent(name="test", model=model)

    result = Runner.run_streamed(agent, "Hello", session=session)

    async def consume_stream() -> None:
        async for _event in result.stream_events():
            pass

    with pytest.raises(RuntimeError, match="Simulated session.add_items failure"):
        # A deadline so a regression fails fast instead of hanging.
        with anyio.fail_after(5):
            await consume_stream()


# SessionSettings cases (tests/memory/test_session.py)


async def test_session_settings_default(backend: Backend) -> None:
    session = backend.session("default_settings_test")

    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit is None


async def test_session_settings_constructor(backend: Backend) -> None:
    session = backend.session("constructor_settings_test", SessionSettings(limit=5))

    assert session.session_settings is not None
    assert session.session_settings.limit == 5


async def test_session_settings_constructor_normalizes_dictionary(backend: Backend) -> None:
    session = backend.session("dictionary_settings_test", {"limit": 0})

    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit == 0
    assert session.session_settings.resolve({"limit": 4}).limit == 4
    # Added: the normalized limit is the one get_items() applies.
    await session.add_items([{"role": "user", "content": "kept"}])
    assert await session.get_items() == []


def test_session_settings_rejects_unknown_dictionary_fields(backend: Backend) -> None:
    with pytest.raises(TypeError, match="Unknown session settings: limitt"):
        backend.session("invalid_settings_test", {"limitt": 1})


async def test_get_items_uses_session_settings_limit(backend: Backend) -> None:
    session = backend.session("uses_settings_limit_test", SessionSettings(limit=3))
    await session.add_items([{"role": "user", "content": f"Message {i}"} for i in range(5)])

    retrieved = await session.get_items()
    assert len(retrieved) == 3
    assert retrieved[0].get("content") == "Message 2"
    assert retrieved[1].get("content") == "Message 3"
    assert retrieved[2].get("content") == "Message 4"


async def test_get_items_explicit_limit_overrides_session_settings(backend: Backend) -> None:
    session = backend.session("explicit_override_test", SessionSettings(limit=5))
    await session.add_items([{"role": "user", "content": f"Message {i}"} for i in range(10)])

    retrieved = await session.get_items(limit=2)
    assert len(retrieved) == 2
    assert retrieved[0].get("content") == "Message 8"
    assert retrieved[1].get("content") == "Message 9"


async def test_runner_with_session_settings_override(backend: Backend) -> None:
    session = backend.session("runner_override_test", SessionSettings(limit=100))
    await session.add_items([{"role": "user", "content": f"Turn {i}"} for i in range(10)])

    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    model.enqueue([assistant_message("Got it")])

    await Runner.run(
        agent,
        "New question",
        session=session,
        run_config=RunConfig(session_settings=SessionSettings(limit=2)),
    )

    history_items = [item for item in last_input(model) if item.get("content") != "New question"]
    assert len(history_items) == 2
    # Added: they are the newest two, oldest first.
    assert [item.get("content") for item in history_items] == ["Turn 8", "Turn 9"]


# --------------------------------------------------------------------------------------
# tests/memory/test_session_limit.py
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_limit_parameter(backend: Backend, runner_method: str) -> None:
    session = backend.session("limit_test")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    for i in (1, 2, 3):
        model.enqueue([assistant_message(f"Reply {i}")])
        await run_agent_async(runner_method, agent, f"Message {i}", session=session)

    assert len(await session.get_items()) == 6

    model.enqueue([assistant_message("Reply 4")])
    await run_agent_async(
        runner_method,
        agent,
        "Message 4",
        session=session,
        run_config=RunConfig(session_settings=SessionSettings(limit=2)),
    )

    seen = last_input(model)
    assert len(seen) == 3
    assert seen[0].get("content") == "Message 3"
    assert seen[1].get("content")[0]["text"] == "Reply 3"
    assert seen[2].get("content") == "Message 4"


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_limit_drops_unmatched_history_function_call_output(
    backend: Backend, runner_method: str
) -> None:
    """A limit boundary must not pass an output whose matching call was excluded."""
    session = backend.session("limit_tool_pair")
    history: list[Any] = [
        {"role": "user", "content": "What is the weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
        },
    ]
    await session.add_items(history)

    # The session returns exactly the newest two stored items; the runner, not the
    # session, drops the output whose call fell outside.
    assert await session.get_items(limit=2) == history[-2:]

    model = ScriptedModel()
    model.enqueue([assistant_message("Tomorrow is sunny too.")])
    agent = Agent(name="test", model=model)

    await run_agent_async(
        runner_method,
        agent,
        "What about tomorrow?",
        session=session,
        run_config=RunConfig(session_settings=SessionSettings(limit=2)),
    )

    assert last_input(model) == [
        history[-1],
        {"role": "user", "content": "What about tomorrow?"},
    ]


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_limit_zero(backend: Backend, runner_method: str) -> None:
    session = backend.session("limit_zero_test")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    for i in (1, 2):
        model.enqueue([assistant_message(f"Reply {i}")])
        await run_agent_async(runner_method, agent, f"Message {i}", session=session)

    model.enqueue([assistant_message("Reply 3")])
    await run_agent_async(
        runner_method,
        agent,
        "Message 3",
        session=session,
        run_config=RunConfig(session_settings=SessionSettings(limit=0)),
    )

    seen = last_input(model)
    assert len(seen) == 1
    assert seen[0].get("content") == "Message 3"


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_limit_none_gets_all_history(backend: Backend, runner_method: str) -> None:
    session = backend.session("limit_none_test")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    for i in range(1, 6):
        model.enqueue([assistant_message(f"Reply {i}")])
        await run_agent_async(runner_method, agent, f"Message {i}", session=session)

    assert len(await session.get_items()) == 10

    model.enqueue([assistant_message("Reply 6")])
    await run_agent_async(
        runner_method,
        agent,
        "Message 6",
        session=session,
        run_config=RunConfig(session_settings=SessionSettings(limit=None)),
    )

    seen = last_input(model)
    assert len(seen) == 11
    assert seen[0].get("content") == "Message 1"
    assert seen[-1].get("content") == "Message 6"


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_limit_larger_than_history(backend: Backend, runner_method: str) -> None:
    session = backend.session("limit_large_test")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    model.enqueue([assistant_message("Reply 1")])
    await run_agent_async(runner_method, agent, "Message 1", session=session)

    model.enqueue([assistant_message("Reply 2")])
    await run_agent_async(
        runner_method,
        agent,
        "Message 2",
        session=session,
        run_config=RunConfig(session_settings=SessionSettings(limit=100)),
    )

    seen = last_input(model)
    assert len(seen) == 3
    assert seen[0].get("content") == "Message 1"
    assert seen[1].get("content")[0]["text"] == "Reply 1"
    assert seen[2].get("content") == "Message 2"


async def test_session_limit_negative_returns_empty(backend: Backend) -> None:
    session = backend.session("limit_negative_test")
    await session.add_items(
        [
            {"role": "user", "content": "1"},
            {"role": "assistant", "content": "2"},
        ]
    )

    assert await session.get_items(limit=-1) == []
    assert await session.get_items(limit=0) == []
    assert len(await session.get_items(limit=1)) == 1
    assert len(await session.get_items()) == 2


# --------------------------------------------------------------------------------------
# tests/memory/test_file_session.py
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limit, expected_contents",
    [
        pytest.param(0, [], id="zero"),
        pytest.param(1, ["third"], id="one"),
        pytest.param(2, ["second", "third"], id="latest-in-order"),
        pytest.param(5, ["first", "second", "third"], id="larger-than-history"),
        pytest.param(None, ["first", "second", "third"], id="unlimited"),
    ],
)
async def test_get_items_respects_limit_without_changing_stored_history(
    backend: Backend, limit: int | None, expected_contents: list[str]
) -> None:
    session = backend.session("history")
    items: list[Any] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "second"},
        {"role": "user", "content": "third"},
    ]
    await session.add_items(items)

    resumed = backend.session("history")
    retrieved = await resumed.get_items(limit=limit)

    assert [item["content"] for item in retrieved] == expected_contents
    assert await resumed.get_items() == items


# --------------------------------------------------------------------------------------
# tests/memory/test_session_context_wrapper.py
# --------------------------------------------------------------------------------------


async def test_runner_preserves_legacy_session_call_shapes(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with a context calls our (wrapper-less) session the legacy way, and works."""

    @dataclass
    class TenantContext:
        tenant_id: str

    session = backend.session("legacy")
    get_calls = 0
    real_get_items = session.get_items

    async def counting_get_items(limit: int | None = None) -> Any:
        nonlocal get_calls
        get_calls += 1
        return await real_get_items(limit)

    monkeypatch.setattr(session, "get_items", counting_get_items)

    model = ScriptedModel([[assistant_message("ok")]])
    agent = Agent(name="test", model=model)

    result = await Runner.run(
        agent, "hello", context=TenantContext(tenant_id="tenant-a"), session=session
    )

    assert result.final_output == "ok"
    assert get_calls == 1
    assert len(await real_get_items()) == 2


# --------------------------------------------------------------------------------------
# Keeping the port honest: every SDK case at the commit named in the docstring
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ported:
    """The SDK case is ported as ``test``; ``runner_methods``: it runs per Runner method."""

    test: str
    runner_methods: bool = False


@dataclass(frozen=True)
class LeftOut:
    """The SDK case is not ported; the module docstring says why."""

    reason: str


_SESSION = "tests/memory/test_session.py::"
_LIMIT = "tests/memory/test_session_limit.py::"
_INTERNALS = "SQLiteSession internals"

#: Every test case of the SDK's two session test files at the commit the docstring names,
#: in their order.
SDK_CASES: dict[str, Ported | LeftOut] = {
    _SESSION + "test_await_mutation_cancellation_hides_later_failure_without_loop_error": (
        LeftOut("a private SDK helper, no session")
    ),
    _SESSION + "test_session_memory_basic_functionality_parametrized": Ported(
        "test_session_memory_basic_functionality_parametrized", runner_methods=True
    ),
    _SESSION + "test_session_memory_with_explicit_instance_parametrized": Ported(
        "test_session_memory_with_explicit_instance_parametrized", runner_methods=True
    ),
    _SESSION + "test_session_memory_disabled_parametrized": Ported(
        "test_session_memory_disabled_parametrized", runner_methods=True
    ),
    _SESSION + "test_session_memory_different_sessions_parametrized": Ported(
        "test_session_memory_different_sessions_parametrized", runner_methods=True
    ),
    _SESSION + "test_sqlite_session_memory_direct": Ported("test_sqlite_session_memory_direct"),
    _SESSION + "test_sqlite_session_close_closes_worker_thread_connections": LeftOut(_INTERNALS),
    _SESSION + "test_sqlite_session_closed_rejects_empty_add_items": Ported(
        "test_closed_memory_rejects_empty_add_items"
    ),
    _SESSION + "test_sqlite_session_memory_pop_item": Ported("test_sqlite_session_memory_pop_item"),
    _SESSION + "test_session_memory_pop_different_sessions": Ported(
        "test_session_memory_pop_different_sessions"
    ),
    _SESSION + "test_sqlite_session_pop_item_skips_corrupt_most_recent": Ported(
        "test_pop_item_skips_corrupt_most_recent"
    ),
    _SESSION + "test_sqlite_session_pop_item_returns_none_after_dropping_only_corrupt_rows": (
        Ported("test_pop_item_returns_none_after_dropping_only_corrupt_rows")
    ),
    _SESSION + "test_sqlite_session_get_items_with_limit": Ported(
        "test_sqlite_session_get_items_with_limit"
    ),
    _SESSION + "test_sqlite_session_get_items_limit_skips_corrupt_newest_rows": Ported(
        "test_get_items_limit_skips_corrupt_newest_rows"
    ),
    _SESSION + "test_sqlite_session_get_items_session_settings_limit_skips_corrupt_rows": (
        Ported("test_get_items_session_settings_limit_skips_corrupt_rows")
    ),
    _SESSION + "test_session_memory_appends_list_input_by_default": Ported(
        "test_session_memory_appends_list_input_by_default", runner_methods=True
    ),
    _SESSION + "test_session_callback_prepared_input": Ported(
        "test_session_callback_prepared_input", runner_methods=True
    ),
    _SESSION + "test_session_callback_repeating_history_does_not_grow_session": Ported(
        "test_session_callback_repeating_history_does_not_grow_session", runner_methods=True
    ),
    _SESSION + "test_sqlite_session_unicode_content": Ported("test_sqlite_session_unicode_content"),
    _SESSION + "test_sqlite_session_special_characters_and_sql_injection": Ported(
        "test_sqlite_session_special_characters_and_sql_injection"
    ),
    _SESSION + "test_sqlite_session_concurrent_access": Ported(
        "test_sqlite_session_concurrent_access"
    ),
    _SESSION + "test_sqlite_session_file_lock_is_shared_across_instances": Ported(
        "test_sessions_sharing_one_database_written_concurrently"
    ),
    _SESSION + "test_sqlite_session_failed_add_items_releases_write_lock": Ported(
        "test_failed_add_items_stores_nothing_and_session_stays_usable"
    ),
    _SESSION + "test_session_add_items_exception_propagates_in_streamed": Ported(
        "test_session_add_items_exception_propagates_in_streamed"
    ),
    _SESSION + "test_session_settings_default": Ported("test_session_settings_default"),
    _SESSION + "test_session_settings_constructor": Ported("test_session_settings_constructor"),
    _SESSION + "test_session_settings_constructor_normalizes_dictionary": Ported(
        "test_session_settings_constructor_normalizes_dictionary"
    ),
    _SESSION + "test_session_settings_rejects_unknown_dictionary_fields": Ported(
        "test_session_settings_rejects_unknown_dictionary_fields"
    ),
    _SESSION + "test_get_items_uses_session_settings_limit": Ported(
        "test_get_items_uses_session_settings_limit"
    ),
    _SESSION + "test_get_items_explicit_limit_overrides_session_settings": Ported(
        "test_get_items_explicit_limit_overrides_session_settings"
    ),
    _SESSION + "test_session_settings_resolve": LeftOut("SessionSettings alone, no session"),
    _SESSION + "test_runner_with_session_settings_override": Ported(
        "test_runner_with_session_settings_override"
    ),
    _SESSION + "test_sqlite_session_failed_clear_session_rolls_back": LeftOut(_INTERNALS),
    _SESSION + "test_sqlite_session_failed_pop_item_releases_write_lock": LeftOut(_INTERNALS),
    _SESSION + "test_sqlite_session_rollback_failure_evicts_connection": LeftOut(_INTERNALS),
    _SESSION + "test_sqlite_session_close_retries_quarantined_connection": LeftOut(_INTERNALS),
    _SESSION + "test_sqlite_session_post_commit_cancellation_propagates_after_known_outcome": (
        LeftOut(_INTERNALS)
    ),
    _LIMIT + "test_session_limit_parameter": Ported(
        "test_session_limit_parameter", runner_methods=True
    ),
    _LIMIT + "test_session_limit_drops_unmatched_history_function_call_output": Ported(
        "test_session_limit_drops_unmatched_history_function_call_output", runner_methods=True
    ),
    _LIMIT + "test_session_limit_zero": Ported("test_session_limit_zero", runner_methods=True),
    _LIMIT + "test_session_limit_none_gets_all_history": Ported(
        "test_session_limit_none_gets_all_history", runner_methods=True
    ),
    _LIMIT + "test_session_limit_larger_than_history": Ported(
        "test_session_limit_larger_than_history", runner_methods=True
    ),
}

#: The tests here that port no case of those two files (the docstring says where each
#: comes from).
OWN_CASES = (
    "test_session_limit_negative_returns_empty",
    "test_runner_preserves_legacy_session_call_shapes",
    "test_get_items_respects_limit_without_changing_stored_history",
    "test_pop_item_without_pop_message_raises_not_implemented",
)

#: The tests below, which check these lists.
_LIST_CHECKS = (
    "test_every_ported_sdk_case_names_a_test_of_this_module",
    "test_sdk_cases_run_per_runner_method_here_too",
    "test_every_left_out_sdk_case_and_own_case_is_explained_in_the_docstring",
    "test_every_test_here_ports_a_listed_sdk_case_or_is_our_own",
)


def _module_tests() -> dict[str, Callable[..., Any]]:
    return {
        name: value
        for name, value in globals().items()
        if name.startswith("test_") and callable(value)
    }


def _runner_method_values(test: Callable[..., Any] | None) -> list[Any] | None:
    """The ``runner_method`` values ``test`` is parametrized with (None: it is not)."""
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize" and mark.args[0] == "runner_method":
            return list(mark.args[1])
    return None


def test_every_ported_sdk_case_names_a_test_of_this_module() -> None:
    tests = _module_tests()
    missing = {
        case: entry.test
        for case, entry in SDK_CASES.items()
        if isinstance(entry, Ported) and entry.test not in tests
    }
    assert missing == {}


def test_sdk_cases_run_per_runner_method_here_too() -> None:
    tests = _module_tests()
    wrong = {
        entry.test: _runner_method_values(tests.get(entry.test))
        for entry in SDK_CASES.values()
        if isinstance(entry, Ported)
        and entry.runner_methods
        and _runner_method_values(tests.get(entry.test)) != RUNNER_METHODS
    }
    assert wrong == {}


def test_every_left_out_sdk_case_and_own_case_is_explained_in_the_docstring() -> None:
    left_out = [case.split("::")[1] for case, e in SDK_CASES.items() if isinstance(e, LeftOut)]
    unexplained = [name for name in [*left_out, *OWN_CASES] if f"``{name}``" not in __doc__]
    assert unexplained == []


def test_every_test_here_ports_a_listed_sdk_case_or_is_our_own() -> None:
    ported = {entry.test for entry in SDK_CASES.values() if isinstance(entry, Ported)}
    unlisted = set(_module_tests()) - ported - set(OWN_CASES) - set(_LIST_CHECKS)
    assert sorted(unlisted) == []
    assert set(_LIST_CHECKS) <= set(_module_tests())
