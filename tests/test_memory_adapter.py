"""StoreMemory, the async adapter: its own methods, cancellation, closing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from agentsession import SQLiteSessionMemory, SQLiteStore, StoreClosed, StoreMemory

pytestmark = pytest.mark.anyio


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def test_get_messages_limit_and_pop_message(sqlite_memory: SQLiteSessionMemory) -> None:
    await sqlite_memory.add_messages("s", [user(str(i)) for i in range(5)])
    assert await sqlite_memory.get_messages("s", limit=2) == [user("3"), user("4")]
    assert await sqlite_memory.pop_message("s") == user("4")
    assert await sqlite_memory.get_messages("s") == [user(str(i)) for i in range(4)]
    assert [s.session_id for s in await sqlite_memory.list_sessions()] == ["s"]


class _GatedStore(SQLiteStore):
    """A store whose add waits at a gate inside the worker thread, mid-call."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        self.entered.set()
        self.release.wait(timeout=30)
        super().add_messages(session_id, messages)


async def test_cancelling_the_caller_mid_write_never_leaves_half_a_write() -> None:
    store = _GatedStore()
    memory = StoreMemory(store)
    batch = [user(str(i)) for i in range(200)]

    async def cancel_once_inside(scope: anyio.CancelScope) -> None:
        await anyio.to_thread.run_sync(store.entered.wait)
        scope.cancel()
        store.release.set()

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(cancel_once_inside, scope)
            await memory.add_messages("s", batch)
            # The cancellation reaches the caller at its next checkpoint, not mid-write.
            assert store.get_messages("s") == batch
            await anyio.lowlevel.checkpoint()
            pytest.fail("the cancelled caller went on past a checkpoint")
    # The caller was cancelled, but the write it had started finished whole.
    assert scope.cancelled_caught
    assert store.get_messages("s") == batch
    memory.close()


async def test_close_and_context_managers(tmp_path: Path) -> None:
    with SQLiteSessionMemory(tmp_path / "a.db") as memory:
        await memory.add_messages("s", [user("1")])
    with pytest.raises(StoreClosed):
        await memory.get_messages("s")
    async with SQLiteSessionMemory(tmp_path / "a.db") as memory:
        assert await memory.get_messages("s") == [user("1")]
    with pytest.raises(StoreClosed):
        memory.store.get_messages("s")


def test_max_threads_is_checked() -> None:
    with pytest.raises(ValueError, match="max_threads must be at least 1, got 0"):
        SQLiteSessionMemory(max_threads=0)
    with pytest.raises(TypeError, match="max_threads"):
        SQLiteSessionMemory(max_threads="8")  # type: ignore[arg-type]


async def test_reads_that_wait_for_nothing_skip_the_thread_hop(tmp_path: Any) -> None:
    # A SQLite file in WAL mode: readers never wait, so the read runs on the event loop;
    # the in-memory database (one shared connection) and writes still go to a thread.
    seen: list[str] = []
    for memory in (SQLiteSessionMemory(tmp_path / "s.db"), SQLiteSessionMemory()):

        def spying_get(
            *args: Any, get_messages: Any = memory.store.get_messages, **kwargs: Any
        ) -> Any:
            seen.append(threading.current_thread().name)
            return get_messages(*args, **kwargs)

        memory.store.get_messages = spying_get  # type: ignore[method-assign]
        await memory.add_messages("s", [{"role": "user", "content": "hi"}])
        assert await memory.get_messages("s") == [{"role": "user", "content": "hi"}]
        memory.close()
    assert seen[0] == threading.current_thread().name
    assert seen[1].startswith("agentsession-store")


async def test_a_task_reading_in_a_loop_lets_the_others_run(tmp_path: Any) -> None:
    # Reads of a SQLite file run on the event loop; each still yields, so a reader that
    # reads without pause does not starve a task that only needs the loop now and then.
    with SQLiteSessionMemory(tmp_path / "s.db") as memory:
        await memory.add_messages("s", [user("hi")])
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            await anyio.lowlevel.checkpoint()  # the ticker starts
            before = ticks
            for _ in range(50):
                await memory.get_messages("s")
            assert ticks - before >= 25
            group.cancel_scope.cancel()


def test_a_caller_cancelled_by_an_anyio_scope_waits_for_its_running_call_without_spinning() -> None:
    """An anyio cancel scope re-delivers its cancellation on every turn of the event loop
    to a task it has not seen shielded; a caller waiting for its running store call must
    not be woken each time (it would spin, holding the GIL the worker thread needs, and a
    large cancelled write took seconds). One cancellation reaches it, however long the
    call runs and however busy the loop is meanwhile."""
    import asyncio

    from agentsession._threads import WorkerThreads

    cancels = 0

    class CountingTask(asyncio.tasks._PyTask):  # type: ignore[name-defined,misc]
        def cancel(self, msg: Any = None) -> bool:
            nonlocal cancels
            cancels += 1
            return bool(super().cancel(msg))

    threads = WorkerThreads(1)
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def call() -> None:
        started.set()
        release.wait(30)
        finished.append("call")

    scopes: list[anyio.CancelScope] = []

    async def caller() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await threads.run(call)
        finished.append("caller")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro, **kw: CountingTask(coro, loop=loop, **kw))
        task = loop.create_task(caller())
        assert await asyncio.to_thread(started.wait, 30)  # the call runs in its thread
        scopes[0].cancel()
        for _ in range(200):  # the loop turns while the call still runs
            await asyncio.sleep(0)
        release.set()
        await task

    try:
        asyncio.run(main())
    finally:
        threads.close()
    assert finished == ["call", "caller"]
    assert cancels <= 2, f"the waiting caller was cancelled {cancels} times"
