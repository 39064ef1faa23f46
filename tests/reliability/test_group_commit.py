"""Group commit under failure: SIGKILL while groups commit, callers cancelled in a group."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from agentsession import SQLiteSessionMemory, SQLiteStore
from agentsession.stores.sqlite.writer import writer_for

from . import _workers
from ._workers import integrity_check

pytestmark = pytest.mark.timeout(600 if _workers.FULL_SIZE else 120)

THREADS = 6
PER_ADD = 3


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _adding_threads(path: str, ack_fd: int) -> None:
    """Child: THREADS threads add forever; each add is acknowledged once it returned."""
    store = SQLiteStore(path)
    ack_lock = threading.Lock()

    def run(t: int) -> None:
        i = 0
        while True:
            store.add_messages(f"t{t}", [_user(f"{t}.{i}.{k}") for k in range(PER_ADD)])
            with ack_lock:
                os.write(ack_fd, f"{t} {i}\n".encode())
            i += 1

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_sigkill_while_groups_commit_loses_no_acknowledged_add_and_splits_none(
    tmp_path: Path,
) -> None:
    path = tmp_path / "group.db"
    SQLiteStore(path).close()
    read_fd, write_fd = os.pipe()
    context = multiprocessing.get_context("fork")  # the child inherits the pipe's write end
    child = context.Process(target=_adding_threads, args=(str(path), write_fd))
    child.start()
    os.close(write_fd)
    acked: dict[int, int] = {}
    buffered = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while sum(n + 1 for n in acked.values()) < 40 * THREADS:
            chunk = pipe.read(4096)
            assert chunk, "the child stopped early"
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                t, i = map(int, line.split())
                acked[t] = max(acked.get(t, -1), i)
        os.kill(child.pid or 0, signal.SIGKILL)  # while its threads are in groups
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        rest = buffered + pipe.read()  # acks written before the kill
    for line in rest.split(b"\n"):
        if line.strip():
            t, i = map(int, line.split())
            acked[t] = max(acked.get(t, -1), i)

    assert integrity_check(path) == ["ok"]
    with SQLiteStore(path) as store:
        for t in range(THREADS):
            texts = [m["content"] for m in store.get_messages(f"t{t}")]
            # Whole adds only, in order, with nothing missing before the last one ...
            assert len(texts) % PER_ADD == 0
            adds = len(texts) // PER_ADD
            assert texts == [f"{t}.{i}.{k}" for i in range(adds) for k in range(PER_ADD)]
            # ... and every add the child saw return is there.
            assert adds - 1 >= acked.get(t, -1)
            assert store.message_count(f"t{t}") == len(texts)
        store.add_messages("after", [_user("the file still takes writes")])


class _Signalling(deque[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def append(self, item: Any) -> None:
        super().append(item)
        with self.changed:
            self.changed.notify_all()


@pytest.mark.anyio
async def test_a_caller_cancelled_inside_a_group_gets_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cancel.db"
    memory = SQLiteSessionMemory(path)
    store = memory.store
    assert store.path is not None
    writer = writer_for(store.path, store.synchronous)
    queue = writer._queue = _Signalling()
    entered, release = threading.Event(), threading.Event()

    def gate(conn: sqlite3.Connection) -> None:
        entered.set()
        assert release.wait(30)

    holder = threading.Thread(target=store._write, args=(gate,))
    holder.start()
    assert await asyncio.to_thread(entered.wait, 30)
    items = [_user(f"item {i}") for i in range(5)]
    task = asyncio.create_task(memory.add_messages("s", items))

    def queued() -> bool:
        with queue.changed:
            return queue.changed.wait_for(lambda: len(queue) >= 1, timeout=30)

    assert await asyncio.to_thread(queued)  # its add waits in the next group
    task.cancel()
    await asyncio.sleep(0)  # the cancellation reaches the caller while its add is queued
    # The cancelled caller waits for its started add (bounded by busy_timeout); let the
    # group in front of it commit, then the caller's own group runs and it is cancelled.
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(holder.join, 30)
    # A later write of this process is committed after the cancelled caller's group.
    await asyncio.to_thread(store.add_messages, "later", [_user("later")])
    stored = await memory.get_messages("s")
    assert stored in ([], items)
    assert await asyncio.to_thread(store.message_count, "s") == len(stored)
    await memory.aclose()
