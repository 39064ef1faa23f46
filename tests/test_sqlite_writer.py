"""Group commit (``stores.sqlite.writer``): shared transactions, savepoints, hand-off."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsession.exceptions import StoreBusy
from agentsession.stores.sqlite.writer import Writer

BUSY_MS = 5000


class _Signalling(deque[Any]):
    """The writer's queue, telling the test each time a caller has queued."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def append(self, item: Any) -> None:
        super().append(item)
        with self.changed:
            self.changed.notify_all()

    def wait_for_length(self, n: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self) >= n, timeout=30)


def _database(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
        "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.close()


class _Connections:
    """One connection per thread, as ``SQLiteStore`` keeps them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()
        self.all: list[sqlite3.Connection] = []

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_MS / 1000
            )
            conn.execute("PRAGMA foreign_keys=ON")
            self.local.conn = conn
            self.all.append(conn)
        yield conn


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Writer, _Connections]]:
    path = tmp_path / "w.db"
    _database(path)
    conns = _Connections(path)
    yield Writer(str(path)), conns
    for conn in conns.all:
        conn.close()


def _write(writer: Writer, conns: _Connections, work: Any, timeout: float = 5.0) -> Any:
    return writer.write(work, connect=conns.connect, timeout=timeout, busy_timeout_ms=BUSY_MS)


def _rows(conns: _Connections) -> dict[str, int]:
    with conns.connect() as conn:
        return dict(conn.execute("SELECT k, v FROM t").fetchall())


def _insert(key: str, value: int) -> Any:
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES (?, ?)", (key, value))
        return key

    return work


def test_callers_queued_behind_a_commit_share_the_next_transaction(db: Any) -> None:
    writer, conns = db
    queue = writer._queue = _Signalling()
    entered, release = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES ('first', 0)")
        entered.set()
        assert release.wait(30)
        return "first"

    results: dict[str, Any] = {}

    def call(name: str, work: Any) -> None:
        results[name] = _write(writer, conns, work)

    first = threading.Thread(target=call, args=("first", slow))
    first.start()
    assert entered.wait(30)
    others = [threading.Thread(target=call, args=(f"k{i}", _insert(f"k{i}", i))) for i in range(10)]
    for thread in others:
        thread.start()
    queue.wait_for_length(10)  # all ten wait while the first transaction is open
    release.set()
    for thread in [first, *others]:
        thread.join(30)

    assert results == {"first": "first", **{f"k{i}": f"k{i}" for i in range(10)}}
    assert _rows(conns) == {"first": 0, **{f"k{i}": i for i in range(10)}}
    # One transaction for the first caller, ONE for the ten that queued behind it.
    assert (writer.groups, writer.works) == (2, 11)


def test_a_failing_work_fails_alone_and_leaves_nothing(db: Any) -> None:
    writer, conns = db
    queue = writer._queue = _Signalling()
    entered, release = threading.Event(), threading.Event()

    def gate(conn: sqlite3.Connection) -> None:
        entered.set()
        assert release.wait(30)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('half', 1)")
        conn.execute("INSERT INTO t VALUES ('a', 2)")  # 'a' is taken: IntegrityError

    def bad_input(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('half2', 1)")
        raise ValueError("bad input")

    outcomes: dict[str, Any] = {}

    def call(name: str, work: Any) -> None:
        try:
            outcomes[name] = _write(writer, conns, work)
        except Exception as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=call, args=("gate", gate))]
    threads[0].start()
    assert entered.wait(30)
    for name, work in [
        ("a", _insert("a", 1)),
        ("half", half_then_fail),
        ("bad", bad_input),
        ("b", _insert("b", 3)),
    ]:
        threads.append(threading.Thread(target=call, args=(name, work)))
        threads[-1].start()
        queue.wait_for_length(len(threads) - 1)  # queued in this order
    release.set()
    for thread in threads:
        thread.join(30)

    assert isinstance(outcomes["half"], sqlite3.IntegrityError)
    assert isinstance(outcomes["bad"], ValueError) and str(outcomes["bad"]) == "bad input"
    assert outcomes["a"] == "a" and outcomes["b"] == "b"
    assert _rows(conns) == {"a": 1, "b": 3}
    assert writer.groups == 2  # the four shared one transaction


def test_a_failed_commit_fails_every_caller_of_the_group_and_stores_nothing(db: Any) -> None:
    writer, conns = db
    queue = writer._queue = _Signalling()
    entered, release = threading.Event(), threading.Event()

    def gate(conn: sqlite3.Connection) -> None:
        entered.set()
        assert release.wait(30)

    def orphan(conn: sqlite3.Connection) -> None:
        # A deferred foreign key: the statement succeeds, COMMIT fails.
        conn.execute("INSERT INTO child VALUES (1, 99)")

    outcomes: dict[str, Any] = {}

    def call(name: str, work: Any) -> None:
        try:
            outcomes[name] = _write(writer, conns, work)
        except Exception as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=call, args=("gate", gate))]
    threads[0].start()
    assert entered.wait(30)
    for name, work in [("a", _insert("a", 1)), ("orphan", orphan), ("b", _insert("b", 2))]:
        threads.append(threading.Thread(target=call, args=(name, work)))
        threads[-1].start()
    queue.wait_for_length(3)
    release.set()
    for thread in threads:
        thread.join(30)

    for name in ("a", "orphan", "b"):
        assert isinstance(outcomes[name], sqlite3.IntegrityError), outcomes
    assert _rows(conns) == {}
    with conns.connect() as conn:
        assert conn.execute("SELECT count(*) FROM child").fetchone() == (0,)
    # The writer goes on working.
    assert _write(writer, conns, _insert("c", 3)) == "c"
    assert _rows(conns) == {"c": 3}


def test_another_connection_holding_the_write_lock_gives_the_busy_error(
    db: Any, tmp_path: Path
) -> None:
    writer, conns = db
    blocker = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    ran: list[bool] = []

    def work(conn: sqlite3.Connection) -> None:
        ran.append(True)

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _write(writer, conns, work, timeout=0.2)
    assert ran == []
    blocker.execute("ROLLBACK")
    blocker.close()
    assert _write(writer, conns, _insert("a", 1)) == "a"
    # The connection's own busy handler is left as it was, for readers.
    with conns.connect() as conn:
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (BUSY_MS,)


def test_a_caller_whose_turn_does_not_come_gets_store_busy_and_nothing_runs(db: Any) -> None:
    writer, conns = db
    ran: list[bool] = []
    with writer.exclusive():
        with pytest.raises(StoreBusy, match="busy_timeout|busy timeout"):
            _write(writer, conns, lambda conn: ran.append(True), timeout=0.05)
    assert ran == []
    assert _write(writer, conns, _insert("a", 1)) == "a"


def _process_writer(path: str, name: str, threads: int, per_thread: int) -> None:
    conns = _Connections(Path(path))
    writer = Writer(path)

    def run(t: int) -> None:
        for i in range(per_thread):
            _write(writer, conns, _insert(f"{name}-{t}-{i}", i), timeout=60)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_processes_of_writing_threads_lose_nothing(db: Any, tmp_path: Path) -> None:
    _, conns = db
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_process_writer, args=(str(tmp_path / "w.db"), f"p{p}", 4, 25))
        for p in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    rows = _rows(conns)
    assert len(rows) == 3 * 4 * 25
    assert rows == {f"p{p}-{t}-{i}": i for p in range(3) for t in range(4) for i in range(25)}
