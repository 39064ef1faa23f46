"""Turns at the write lock between processes (``stores.sqlite.turns``): queued by the
kernel, bounded by the caller's deadline, given back by a dying process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agentsession import SQLiteStore
from agentsession.stores.sqlite.lease import ofd_locks_available
from agentsession.stores.sqlite.turns import ProcessTurns
from agentsession.stores.sqlite.writer import writer_for

pytestmark = pytest.mark.skipif(not ofd_locks_available(), reason="needs Linux OFD locks")


def test_a_turn_excludes_others_and_a_waiter_gives_up_at_its_deadline(tmp_path: Path) -> None:
    first, second = ProcessTurns(tmp_path / "db"), ProcessTurns(tmp_path / "db")
    assert first.take(0)
    started = time.monotonic()
    assert not second.take(0.2)  # held by another description: waits, then gives up
    assert 0.2 <= time.monotonic() - started < 5
    first.give()
    assert second.take(5)
    second.give()


def test_a_turn_that_comes_after_its_waiter_gave_up_is_given_back(tmp_path: Path) -> None:
    holder, late, next_one = (ProcessTurns(tmp_path / "db") for _ in range(3))
    assert holder.take(0)
    assert not late.take(0.05)  # its request stays queued in the kernel
    holder.give()  # the kernel may now grant it to the late waiter, which must hand it on
    assert next_one.take(5)
    next_one.give()


def _hold_turn_forever(path: Path, ready: multiprocessing.synchronize.Event) -> None:
    turns = ProcessTurns(path)
    assert turns.take(0)
    ready.set()
    time.sleep(60)  # killed by the test long before


def test_a_process_killed_holding_its_turn_blocks_nobody(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_hold_turn_forever, args=(tmp_path / "db", ready))
    child.start()
    try:
        assert ready.wait(30)
        waiting = ProcessTurns(tmp_path / "db")
        assert not waiting.take(0)
        os.kill(child.pid, signal.SIGKILL)
        assert waiting.take(10)  # the kernel gave the dead process's turn back
        waiting.give()
    finally:
        child.kill()
        child.join()


def test_a_store_write_gives_its_turn_back_and_waits_for_another_processes_turn(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "sessions.db", busy_timeout=5)
    other = ProcessTurns(tmp_path / "sessions.db")
    try:
        store.add_messages("s", [{"role": "user", "content": "one"}])
        assert other.take(0)  # the add gave its turn back when it committed
        writes = writer_for(tmp_path / "sessions.db").groups
        done: list[float] = []

        def add() -> None:
            store.add_messages("s", [{"role": "user", "content": "two"}])
            done.append(time.monotonic())

        thread = threading.Thread(target=add)
        thread.start()
        thread.join(0.3)
        assert not done  # it waits for the other process's turn...
        given = time.monotonic()
        other.give()
        thread.join(10)
        assert done and done[0] >= given  # ...and writes as soon as it is given back
        assert writer_for(tmp_path / "sessions.db").groups == writes + 1
        assert [m["content"] for m in store.get_messages("s")] == ["one", "two"]
    finally:
        other.give()
        store.close()
    # No descriptor of the side file stays open once the store is closed.
    side = str(tmp_path / "sessions.db-leases")
    assert [fd for fd in os.listdir("/proc/self/fd") if _points_at(fd, side)] == []


def _points_at(fd: str, path: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == path
    except OSError:
        return False
