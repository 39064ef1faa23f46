"""Cancellation: tasks cancelled while awaiting a write leave it whole or absent, and leak
neither threads nor connections."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentsession import SQLiteSessionMemory

from . import _workers
from ._workers import Scale, batch_items, check_bookkeeping, integrity_check, split_groups

pytestmark = pytest.mark.timeout(600 if _workers.FULL_SIZE else 120)

SESSIONS = 8
WAVE = 8
WAYS = ("move_on_after", "fail_after", "wait_for", "cancel_scope", "task.cancel", "sdk_session")


def _open_files(path: Path) -> int:
    """How many of this process's file descriptors point at the database or its WAL/SHM."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") in names
        except OSError:
            pass
    return count


async def _one(memory: SQLiteSessionMemory, n: int, way: str, delay: float) -> str:
    """Add batch ``n`` and cancel the wait for it after ``delay`` seconds, ``way``'s way.

    Returns ``"acked"`` if the add returned, ``"cancelled"`` if the cancellation came
    first. Anything else (an error, a cancellation swallowed) escapes and fails the test.
    """
    session = f"s{n % SESSIONS}"
    batch = batch_items(n, 1 + n % 40, (n * 37) % 3000)
    if way in ("move_on_after", "fail_after"):
        if way == "move_on_after":
            with anyio.move_on_after(delay) as scope:
                await memory.add_messages(session, batch)
            return "cancelled" if scope.cancelled_caught else "acked"
        try:
            with anyio.fail_after(delay):
                await memory.add_messages(session, batch)
        except TimeoutError:
            return "cancelled"
        return "acked"
    if way == "wait_for":
        try:
            await asyncio.wait_for(memory.add_messages(session, batch), delay)
        except TimeoutError:
            return "cancelled"
        return "acked"
    if way == "cancel_scope":
        outcome = "acked"
        async with anyio.create_task_group() as group:
            with anyio.CancelScope() as scope:

                async def cancel_later() -> None:
                    await anyio.sleep(delay)
                    scope.cancel()

                group.start_soon(cancel_later)
                await memory.add_messages(session, batch)
                group.cancel_scope.cancel()
            if scope.cancelled_caught:
                outcome = "cancelled"
        return outcome
    if way == "task.cancel":
        task = asyncio.ensure_future(memory.add_messages(session, batch))
        asyncio.get_running_loop().call_later(delay, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "acked"
    # The Agents SDK's Session, as a run calls it, cancelled by a timeout.
    with anyio.move_on_after(delay) as scope:
        await memory.session(session).add_items(batch)  # type: ignore[arg-type]
    return "cancelled" if scope.cancelled_caught else "acked"


async def _storm(memory: SQLiteSessionMemory, tasks: int, rng: random.Random) -> dict[int, str]:
    outcomes: dict[int, str] = {}

    async def run(n: int, way: str, delay: float) -> None:
        outcomes[n] = await _one(memory, n, way, delay)

    for wave in range(0, tasks, WAVE):
        async with anyio.create_task_group() as group:
            for n in range(wave, min(wave + WAVE, tasks)):
                # 0 (cancelled at the first checkpoint), or a random moment in 0-0.5 ms
                # (about the time a write takes), 0-2 ms or 0-20 ms.
                delay = rng.choice(
                    [0.0, rng.uniform(0, 0.0005), rng.uniform(0, 0.002), rng.uniform(0, 0.02)]
                )
                group.start_soon(run, n, rng.choice(WAYS), delay, name=f"add {n}")
    return outcomes


def test_cancelled_writes_are_all_or_nothing_and_leak_no_thread_or_connection(
    tmp_path: Path, scale: Scale
) -> None:
    """N tasks, each cancelled at a random moment while awaiting its write.

    Tasks run in waves of 8 on a memory with 4 worker threads, so a cancellation lands
    while a task waits for a thread, while its write runs in one, or not at all. The ways:
    ``anyio.move_on_after`` / ``fail_after`` timeouts, ``asyncio.wait_for``, a cancel scope
    cancelled by a sibling task, ``Task.cancel()``, and a timeout around the Agents SDK's
    ``Session.add_items``; each with a delay of 0, 0-0.5 ms, 0-2 ms or 0-20 ms (seeded RNG).

    Proves: every cancellation surfaces as a cancellation (never an error); every batch
    stored is whole and contiguous, every acknowledged batch is stored; the file is sound;
    the memory never had more than ``max_threads`` worker threads, each with one
    connection, kept for later calls; after ``close()`` its threads have ended, no
    connection is open and no file descriptor on the database, WAL or SHM file remains.
    """
    tasks = scale(300, 1000)
    rng = random.Random(scale.seed)
    path = tmp_path / "cancel.db"
    threads_before = set(threading.enumerate())
    memory = SQLiteSessionMemory(path, max_threads=4)
    outcomes = asyncio.run(_storm(memory, tasks, rng))
    _workers.join_anyio_threads(threads_before)
    gc.collect()
    workers = set(threading.enumerate()) - threads_before
    assert all(thread.name.startswith("agentsession-store") for thread in workers), workers
    assert len(workers) <= 4
    # The creating thread's connection and one per worker thread, opened once each.
    assert memory.store.connection_count <= 1 + 4
    opened = memory.store.connections_opened
    assert opened <= 1 + 4

    stored: set[int] = set()
    for session in range(SESSIONS):
        order = split_groups(memory.store.get_messages(f"s{session}"), lambda m: m["batch"])
        assert len(set(order)) == len(order), f"a batch stored twice in s{session}"
        stored.update(order)  # type: ignore[arg-type]
    acked = {n for n, outcome in outcomes.items() if outcome == "acked"}
    assert len(outcomes) == tasks
    assert acked <= stored, f"acknowledged but lost: {sorted(acked - stored)}"
    assert stored <= set(outcomes)
    check_bookkeeping(path)
    assert integrity_check(path) == ["ok"]
    memory.close()
    assert set(threading.enumerate()) <= threads_before, threading.enumerate()
    assert memory.store.connection_count == 0
    assert _open_files(path) == 0

    counts = Counter(outcomes.values())
    _workers.figure(
        f"cancellation: {tasks} tasks; {counts['acked']} acknowledged, "
        f"{counts['cancelled']} cancelled of which {len(stored - acked)} had their write "
        f"finish whole and {counts['cancelled'] - len(stored - acked)} stored nothing; "
        f"0 partial; {opened} connections opened in all (one per thread, reused), "
        "0 after close()"
    )


def test_a_cancelled_write_finishes_before_close_returns_its_connection(tmp_path: Path) -> None:
    """Cancelling a task whose write is running does not let the write outlive the call.

    The cancelled caller waits for its worker thread, so by the time the cancellation
    reaches it the write is whole and the thread's connection is idle: closing the memory
    right then closes every connection with nothing half-done.

    Proves: after a cancelled write and ``close()``, the file holds that batch whole or
    not at all, and no connection or file descriptor is open.
    """
    path = tmp_path / "close.db"
    threads_before = set(threading.enumerate())
    memory = SQLiteSessionMemory(path, max_threads=1)
    batch = batch_items(0, 500, 100)

    async def main() -> None:
        with anyio.move_on_after(0.001):
            await memory.add_messages("s", batch)
        memory.close()

    asyncio.run(main())
    _workers.join_anyio_threads(threads_before)
    gc.collect()
    assert memory.store.connection_count == 0
    assert _open_files(path) == 0
    stored: Any
    with SQLiteSessionMemory(path) as again:
        stored = again.store.get_messages("s")
    assert stored in ([], batch)
