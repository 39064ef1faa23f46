"""Lock contention: another process holding the write lock gets a clear, bounded wait.

``tests/test_sqlite.py::test_writer_waits_then_fails_clearly_when_the_lock_is_held`` covers
a lock held by another connection of the same process; these hold it from another process.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsession import SchemaError, SQLiteSessionMemory, SQLiteStore, StoreBusy, StoreError
from agentsession.stores.sqlite.schema import lock_path

from . import _workers
from ._workers import integrity_check, receive

pytestmark = pytest.mark.timeout(120)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture
def held(tmp_path: Path, spawn: Callable[..., Any]) -> Iterator[tuple[Path, Any, Any]]:
    """A database with one message, whose write lock another process holds.

    The holder has written a session and a message it has not committed. Yields the
    path, the holder process and our end of its pipe.
    """
    path = tmp_path / "held.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", [user("before")])
    proc, conn = spawn(_workers.write_lock_holder, str(path))
    receive(conn, "holding", proc)
    yield path, proc, conn


@pytest.mark.parametrize("timeout", [0.1, 0.3])
def test_a_lock_held_past_busy_timeout_fails_clearly_and_writes_nothing(
    timeout: float, held: tuple[Path, Any, Any]
) -> None:
    """Another process holds the write lock longer than ``busy_timeout``.

    Proves: ``add_messages`` (blocking and async), ``pop_message`` and ``clear_session``
    each wait about ``busy_timeout`` (the setting is honoured: never much less, and not
    much more) and raise ``StoreBusy``, a ``StoreError``, whose message names the file and
    ``busy_timeout=<value>`` and whose ``__cause__`` is sqlite3's error; reads are not
    blocked; nothing of the refused writes is stored and the holder's uncommitted rows are
    never seen; once the holder rolls back, writes succeed.
    """
    path, proc, conn = held
    store = SQLiteStore(path, busy_timeout=timeout)
    memory = SQLiteSessionMemory(path, busy_timeout=timeout)
    attempts: list[tuple[str, Callable[[], object]]] = [
        ("add", lambda: store.add_messages("s", [user("during")])),
        ("add new session", lambda: store.add_messages("t", [user("during")])),
        ("pop", lambda: store.pop_message("s")),
        ("clear", lambda: store.clear_session("s")),
        ("async add", lambda: asyncio.run(memory.add_messages("s", [user("during")]))),
    ]
    waits: list[float] = []
    for name, attempt in attempts:
        began = time.monotonic()
        with pytest.raises(StoreBusy) as info:
            attempt()
        waited = time.monotonic() - began
        waits.append(waited)
        assert timeout * 0.9 <= waited <= timeout + 2.0, (name, waited)
        assert isinstance(info.value, StoreError)
        assert str(path) in str(info.value), name
        assert f"busy_timeout={timeout}" in str(info.value), name
        assert isinstance(info.value.__cause__, sqlite3.OperationalError), name
        # Reads go on while the lock is held, and see only committed rows.
        assert store.get_messages("s") == [user("before")], name
        assert [s.session_id for s in store.list_sessions()] == ["s"], name

    conn.send("rollback")
    receive(conn, "released", proc)
    store.add_messages("s", [user("after")])
    asyncio.run(memory.add_messages("s", [user("after async")]))
    assert store.get_messages("s") == [user("before"), user("after"), user("after async")]
    assert [s.session_id for s in store.list_sessions()] == ["s"]
    store.close()
    memory.close()
    assert integrity_check(path) == ["ok"]
    _workers.figure(
        f"contention: busy_timeout={timeout} s; 5 kinds of write raised StoreBusy after "
        f"{min(waits):.3f}-{max(waits):.3f} s, nothing stored"
    )


def test_threads_queued_behind_a_held_lock_all_fail_within_a_bounded_time(
    held: tuple[Path, Any, Any],
) -> None:
    """Six threads of one process write while another process holds the lock.

    Proves: every thread gets ``StoreBusy`` naming ``busy_timeout``, none waits less than
    the timeout or unboundedly longer (threads of a process also queue for each other,
    so a thread may wait up to about twice the timeout), and nothing is stored.
    """
    path, proc, conn = held
    timeout = 0.3
    store = SQLiteStore(path, busy_timeout=timeout)
    results: list[tuple[float, BaseException | None]] = []

    def add(n: int) -> None:
        began = time.monotonic()
        try:
            store.add_messages("s", [user(f"thread {n}")])
            results.append((time.monotonic() - began, None))
        except BaseException as exc:
            results.append((time.monotonic() - began, exc))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for waited, error in results:
        assert isinstance(error, StoreBusy), error
        assert f"busy_timeout={timeout}" in str(error)
        assert timeout * 0.9 <= waited <= 2 * timeout + 1.0, waited
    assert store.get_messages("s") == [user("before")]
    conn.send("rollback")
    receive(conn, "released", proc)
    store.add_messages("s", [user("after")])
    store.close()
    waits = sorted(waited for waited, _ in results)
    _workers.figure(
        f"contention: 6 threads behind another process's lock, busy_timeout={timeout} s: "
        f"StoreBusy after {waits[0]:.3f}-{waits[-1]:.3f} s"
    )


def test_busy_timeout_is_documented() -> None:
    """The error and its setting are documented where a user looks for them."""
    assert "busy_timeout" in (SQLiteStore.__doc__ or "")
    assert "busy_timeout" in (SQLiteSessionMemory.__doc__ or "")
    assert "StoreBusy" in (SQLiteStore.add_messages.__doc__ or "")
    assert "busy timeout" in (StoreBusy.__doc__ or "")


def _start_add_and_wait_until_it_waits(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Thread, list[BaseException], threading.Event]:
    """Start ``add_messages`` in a thread; return once its BEGIN IMMEDIATE has started."""
    waiting = threading.Event()
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = real_connect(*args, **kwargs)
        connection.set_trace_callback(
            lambda statement: waiting.set() if statement == "BEGIN IMMEDIATE" else None
        )
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)
    errors: list[BaseException] = []

    def add() -> None:
        try:
            store.add_messages("s", [user("queued")])
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=add)
    thread.start()
    assert waiting.wait(30), "the add never began its transaction"
    return thread, errors, waiting


@pytest.mark.parametrize("release", ["rollback", "commit", "kill"])
def test_a_write_waiting_for_the_lock_proceeds_once_it_is_released(
    release: str, held: tuple[Path, Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write queued behind another process's lock goes through when the lock goes.

    The holder ends its transaction by rolling back, by committing, or by being killed
    with SIGKILL mid-transaction. The waiting add has started ``BEGIN IMMEDIATE`` (seen
    through SQLite's trace callback) before the holder is told to let go.

    Proves: the add succeeds (no error within a 30 s busy timeout), after the holder's
    rows if it committed them and without them otherwise; the file is sound.
    """
    path, proc, conn = held
    store = SQLiteStore(path, busy_timeout=30)
    thread, errors, _ = _start_add_and_wait_until_it_waits(store, monkeypatch)
    if release == "kill":
        proc.kill()
        proc.join(30)
    else:
        conn.send(release)
        receive(conn, "released", proc)
    thread.join(60)
    assert not thread.is_alive() and not errors, errors
    assert store.get_messages("s") == [user("before"), user("queued")]
    sessions = sorted(s.session_id for s in store.list_sessions())
    assert sessions == (["held", "s"] if release == "commit" else ["s"])
    store.close()
    assert integrity_check(path) == ["ok"]


def test_the_schema_set_up_lock_held_past_the_timeout_fails_clearly(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    """Another process holds the set-up lock while we create a new database.

    Proves: opening waits about ``busy_timeout`` then raises ``SchemaError`` naming the
    lock file and the timeout; nothing is created in the database; once the lock is
    released the same path opens and works.
    """
    path = tmp_path / "new.db"
    proc, conn = spawn(_workers.setup_lock_holder, str(lock_path(path)))
    receive(conn, "holding", proc)
    began = time.monotonic()
    with pytest.raises(SchemaError) as info:
        SQLiteStore(path, busy_timeout=0.3)
    assert 0.27 <= time.monotonic() - began <= 2.3
    assert str(lock_path(path)) in str(info.value)
    assert "0.3" in str(info.value)
    assert _workers.schema_of(path)["objects"] == []
    conn.send("release")
    receive(conn, "released", proc)
    with SQLiteStore(path, busy_timeout=0.3) as store:
        store.add_messages("s", [user("after")])
        assert store.get_messages("s") == [user("after")]
