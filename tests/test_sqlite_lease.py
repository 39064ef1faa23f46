"""Session leases of the SQLite store (``stores.sqlite.lease``): OFD locks, no writes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsession.protocol import LeaseHolder
from agentsession.stores.sqlite.lease import (
    NOT_LEASED,
    SQL_FUNCTION,
    FileLeases,
    MemoryLeases,
    TableLeases,
    lease_path,
    ofd_locks_available,
)
from agentsession.stores.sqlite.schema import ensure_schema

pytestmark = pytest.mark.skipif(not ofd_locks_available(), reason="OFD locks are Linux-only")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


@pytest.fixture
def leases(database: Path) -> Iterator[FileLeases]:
    held = FileLeases(database)
    yield held
    held.close()


def test_one_owner_at_a_time_renewal_and_release(leases: FileLeases, database: Path) -> None:
    other_store = FileLeases(database)  # another store on the same file, this process
    try:
        assert leases.try_lock("s", "run-1", 30)
        assert leases.try_lock("s", "run-1", 30)  # renewal by its owner
        assert not leases.try_lock("s", "run-2", 30)
        assert not other_store.try_lock("s", "run-1", 30)  # the kernel says: held
        assert other_store.is_held("s") and leases.is_held("s")
        assert other_store.try_lock("t", "run-3", 30)  # other sessions are free
        leases.unlock("s", "run-2")  # not the owner: nothing happens
        assert not other_store.try_lock("s", "run-2", 30)
        leases.unlock("s", "run-1")
        assert not leases.is_held("s") and not other_store.is_held("s")
        assert other_store.try_lock("s", "run-2", 30)
    finally:
        other_store.close()
    assert leases.try_lock("s", "run-1", 30)  # closing a store gives its leases back


def test_the_side_file_is_private(leases: FileLeases, database: Path) -> None:
    assert leases.try_lock("s", "run", 30)
    assert lease_path(database).exists()
    assert stat.S_IMODE(os.stat(lease_path(database)).st_mode) & 0o077 == 0


def test_threads_racing_for_one_session_get_it_once(database: Path) -> None:
    stores = [FileLeases(database) for _ in range(4)]
    barrier = threading.Barrier(16)
    won: list[str] = []

    def race(i: int) -> None:
        barrier.wait()
        if stores[i % 4].try_lock("s", f"owner-{i}", 30):
            won.append(f"owner-{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    for store in stores:
        store.close()


def _hold(database: str, session_id: str, conn: Any) -> None:
    leases = FileLeases(Path(database))
    conn.send(leases.try_lock(session_id, "child-run", 30))
    conn.recv()  # hold until told (or killed)
    conn.send(leases.try_lock("second", "child-run", 30))
    conn.recv()


def test_a_lease_held_by_another_process_blocks_until_that_process_dies(
    leases: FileLeases, database: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    child = context.Process(target=_hold, args=(str(database), "s", theirs))
    child.start()
    try:
        assert mine.recv() is True
        assert not leases.try_lock("s", "parent-run", 30)
        assert leases.is_held("s")
        assert leases.try_lock("second", "parent-run", 30)
        mine.send("next")
        assert mine.recv() is False  # and the other way round
        child.kill()  # SIGKILL: no clean-up runs in the child
        child.join(30)
    finally:
        if child.is_alive():
            child.kill()
    assert not leases.is_held("s")
    assert leases.try_lock("s", "parent-run", 30)


def test_a_forked_child_holds_none_of_its_parents_leases(
    leases: FileLeases, database: Path
) -> None:
    assert leases.try_lock("s", "run", 30)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            answer = b"1" if (not leases.try_lock("s", "run", 30) and leases.is_held("s")) else b"0"
            leases.close()  # must not free the parent's lease
            answer += b"1" if FileLeases(database).try_lock("t", "child", 30) else b"0"
            os.write(write, answer)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer == b"11"
    other = FileLeases(database)
    assert not other.try_lock("s", "another", 30)  # the parent still holds it
    assert other.try_lock("t", "another", 30)  # the child's lease died with it
    other.close()


def test_the_sql_function_tells_prune_which_sessions_are_held(
    leases: FileLeases, database: Path
) -> None:
    conn = sqlite3.connect(database, isolation_level=None)
    ensure_schema(conn, database, 5.0)
    conn.create_function(SQL_FUNCTION, 1, leases.sql_is_held, deterministic=False)
    conn.executemany(
        "INSERT INTO agentsession_sessions (session_id, created_at, updated_at, "
        "message_count, last_seq) VALUES (?, 0, 0, 0, 0)",
        [("a",), ("b",)],
    )
    other = FileLeases(database)
    assert other.try_lock("a", "run", 30)  # held by another store (or process)

    def free() -> list[str]:
        rows = conn.execute(
            f"SELECT session_id FROM agentsession_sessions s WHERE {NOT_LEASED} ORDER BY 1",
            (0.0,),
        )
        return [row[0] for row in rows]

    assert free() == ["b"]
    other.close()
    assert free() == ["a", "b"]
    conn.close()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("", "o", 1), ValueError),
        ((1, "o", 1), TypeError),
        (("s", None, 1), TypeError),
        (("s", "o", 0), ValueError),
        (("s", "o", float("inf")), ValueError),
        (("s", "o", "1"), TypeError),
    ],
)
def test_bad_arguments_are_refused(leases: FileLeases, args: Any, error: type) -> None:
    with pytest.raises(error):
        leases.try_lock(*args)
    assert not leases.is_held("s")


def test_memory_leases_exclude_owners() -> None:
    leases = MemoryLeases()
    assert leases.try_lock("s", "a", 1) and leases.try_lock("s", "a", 1)
    assert not leases.try_lock("s", "b", 1) and leases.is_held("s")
    leases.unlock("s", "b")
    assert leases.is_held("s")
    leases.unlock("s", "a")
    assert leases.try_lock("s", "b", 1)


def test_table_leases_the_fallback_expire_unless_renewed(database: Path) -> None:
    conn = sqlite3.connect(database, isolation_level=None)
    ensure_schema(conn, database, 5.0)

    def write(work: Any) -> Any:
        conn.execute("BEGIN IMMEDIATE")
        result = work(conn)
        conn.execute("COMMIT")
        return result

    leases = TableLeases(write, lambda work: work(conn))
    assert leases.blocks and leases.expires
    assert leases.try_lock("s", "a", 30) and leases.try_lock("s", "a", 30)
    assert not leases.try_lock("s", "b", 30) and leases.is_held("s")
    leases.unlock("s", "a")
    assert not leases.is_held("s") and leases.try_lock("s", "b", 30)
    # An expired lease (its holder died) is taken over.
    conn.execute("UPDATE agentsession_locks SET expires_at = 0")
    assert leases.holder("s") is None
    assert not leases.is_held("s") and leases.try_lock("s", "c", 30)
    # The holder is read from the owner name, when it is agentsession's "host:pid:...".
    assert leases.holder("s") == LeaseHolder()
    leases.unlock("s", "c")
    assert leases.try_lock("s", "box:4242:run:1", 30)
    assert leases.holder("s") == LeaseHolder(4242, "box")
    conn.close()
