"""Child-process entry points and shared checks for the reliability tests.

Workers run in processes forked from a ``forkserver`` that has already imported
agentsession (see ``conftest.mp``), so a child costs a fork, not a 2-5 s import. Each takes
a ``multiprocessing`` connection first and reports through it: ``("error", traceback)`` if
it fails, otherwise the messages documented on the worker. A message is one small pickle,
written in a single ``write()`` to the pipe, so a child killed at any moment leaves every
message it sent whole.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import resource
import signal
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

from agentsession import SQLiteSessionMemory, SQLiteStore, StoreError

F = TypeVar("F", bound=Callable[..., None])

#: ``AGENTSESSION_FULL_SIZE=1`` runs every reliability test at its full size.
FULL_SIZE = os.environ.get("AGENTSESSION_FULL_SIZE", "") == "1"

#: Every random choice derives from this seed; set ``AGENTSESSION_SEED`` to vary it.
SEED = int(os.environ.get("AGENTSESSION_SEED", "20240601"))

#: Lines for the "reliability figures" section at the end of the pytest run.
FIGURES: list[str] = []


@dataclass(frozen=True)
class Scale:
    """The size switch: ``scale(ci, full)`` is the number this run uses."""

    full: bool
    seed: int

    def __call__(self, ci: int, full: int) -> int:
        return full if self.full else ci


def sized(ci: int, full: int) -> int:
    """``full`` when ``AGENTSESSION_FULL_SIZE=1``, else ``ci``."""
    return full if FULL_SIZE else ci


def figure(line: str) -> None:
    """Record one measured figure for the end-of-run summary."""
    FIGURES.append(line)


# -- processes --------------------------------------------------------------------------


def start(ctx: BaseContext, target: Callable[..., None], *args: Any) -> tuple[BaseProcess, Any]:
    """Start ``target(conn, *args)`` in a child; return the process and our end of the pipe."""
    ours, theirs = ctx.Pipe()  # type: ignore[attr-defined]
    proc = ctx.Process(target=target, args=(theirs, *args), daemon=True)  # type: ignore[attr-defined]
    proc.start()
    # Our copy of the child's end must go, or a dead child would never read as EOF.
    theirs.close()
    return proc, ours


def receive(
    conn: Connection, kind: str, proc: BaseProcess, timeout: float = 120
) -> tuple[Any, ...]:
    """The child's next message, which must be of ``kind``; fail clearly otherwise."""
    if not conn.poll(timeout):
        raise AssertionError(f"no {kind!r} message from {proc.name} within {timeout} s")
    try:
        message = conn.recv()
    except EOFError:
        proc.join(10)
        raise AssertionError(
            f"{proc.name} died (exit code {proc.exitcode}) before sending {kind!r}"
        ) from None
    if message[0] == "error":
        raise AssertionError(f"{proc.name} failed:\n{message[1]}")
    assert message[0] == kind, f"expected {kind!r} from {proc.name}, got {message!r}"
    return tuple(message)


def drain(conn: Connection) -> list[Any]:
    """Every message still in the pipe of a child that has ended."""
    messages: list[Any] = []
    while True:
        try:
            if not conn.poll(0):
                return messages
            messages.append(conn.recv())
        except EOFError:
            return messages


def _reporting(func: F) -> F:
    """Send the traceback to the parent instead of losing it in the child's stderr."""

    @functools.wraps(func)
    def run(conn: Connection, *args: Any) -> None:
        try:
            func(conn, *args)
        except BaseException:
            conn.send(("error", traceback.format_exc()))
            raise

    return run  # type: ignore[return-value]


def join_anyio_threads(before: set[threading.Thread] | None = None) -> None:
    """Wait for anyio's worker threads, which end once their event loop has closed.

    Threads in ``before`` are left alone: those of ``Runner.run_sync``'s background loop,
    which lives as long as the process, serve every later run and never end.
    """
    for thread in threading.enumerate():
        if before is not None and thread in before:
            continue
        if thread is not threading.current_thread() and thread.name.startswith("AnyIO"):
            thread.join()


def drop_privileges(uid: int) -> None:
    """Become ``uid`` (and its group) if we are root; a no-op for an ordinary user."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


# -- checks shared by the tests -----------------------------------------------------------


def split_groups(
    messages: Sequence[dict[str, Any]], ident: Callable[[dict[str, Any]], Hashable]
) -> list[Hashable]:
    """Split a session's messages into the groups (batches, turns) they were added in.

    Each message carries its group's identity (``ident``), its index ``i`` in the group and
    the group's size ``n``. Raises AssertionError unless every group is complete, in order
    and contiguous; returns the group identities in stored order.
    """
    groups: list[Hashable] = []
    pos = 0
    while pos < len(messages):
        first = messages[pos]
        key, size = ident(first), first.get("n")
        if not isinstance(size, int) or size < 1:
            raise AssertionError(f"message {pos} does not start a group: {first!r}")
        got = [(ident(m), m.get("i"), m.get("n")) for m in messages[pos : pos + size]]
        want = [(key, i, size) for i in range(size)]
        if got != want:
            raise AssertionError(
                f"group {key!r} at position {pos} is incomplete or interleaved: {got} != {want}"
            )
        groups.append(key)
        pos += size
    return groups


def integrity_check(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` through a plain sqlite3 connection (``["ok"]`` if sound)."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def check_bookkeeping(path: Path) -> None:
    """Every session row agrees with its messages: count, dense seq 1..n, no orphans."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT s.session_id, s.message_count, s.last_seq, COUNT(m.id), "
            "COALESCE(MIN(m.seq), 0), COALESCE(MAX(m.seq), 0) FROM agentsession_sessions s "
            "LEFT JOIN agentsession_messages m ON m.session = s.id GROUP BY s.id"
        ).fetchall()
        orphans = conn.execute(
            "SELECT COUNT(*) FROM agentsession_messages WHERE session NOT IN "
            "(SELECT id FROM agentsession_sessions)"
        ).fetchone()[0]
    finally:
        conn.close()
    for session_id, count, last_seq, rows_, low, high in rows:
        assert count == last_seq == rows_ == high, (session_id, count, last_seq, rows_, high)
        assert low == (1 if rows_ else 0), (session_id, low)
    assert orphans == 0, f"{orphans} messages belong to no session"


def schema_of(path: Path) -> dict[str, Any]:
    """What a complete schema is made of: objects, user_version and applied migrations."""
    conn = sqlite3.connect(path)
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        try:
            applied = conn.execute(
                "SELECT migration_set, name FROM _sqlite_migrations ORDER BY id"
            ).fetchall()
        except sqlite3.OperationalError:
            applied = []
    finally:
        conn.close()
    return {"objects": objects, "user_version": version, "migrations": applied}


# -- load ---------------------------------------------------------------------------------

SHARED_SESSIONS = 3


def own_session(proc: int, thread: int) -> str:
    return f"p{proc}-t{thread}"


def shared_session(proc: int, thread: int) -> str:
    return f"shared-{(proc + thread) % SHARED_SESSIONS}"


def turn_items(proc: int, thread: int, turn: int) -> list[dict[str, Any]]:
    """The messages one writer adds in one turn: 1 to 4, each naming writer, turn, index."""
    writer = own_session(proc, thread)
    size = 1 + (proc + thread + turn) % 4
    return [
        {
            "role": "user" if i == 0 else "assistant",
            "content": f"{writer} turn {turn} item {i}",
            "w": writer,
            "turn": turn,
            "i": i,
            "n": size,
        }
        for i in range(size)
    ]


def _check_previous_turn(last: list[dict[str, Any]], proc: int, thread: int, turn: int) -> None:
    expected = turn_items(proc, thread, turn - 1)[-1:] if turn else []
    if last != expected:
        raise AssertionError(f"turn {turn} of {own_session(proc, thread)} read {last!r}")


def _load_thread(store: SQLiteStore, proc: int, thread: int, turns: int, errors: list[str]) -> None:
    for turn in range(turns):
        try:
            last = store.get_messages(own_session(proc, thread), limit=1)
            _check_previous_turn(last, proc, thread, turn)
            items = turn_items(proc, thread, turn)
            store.add_messages(own_session(proc, thread), items)
            store.add_messages(shared_session(proc, thread), items)
        except Exception:
            errors.append(traceback.format_exc())


async def _load_task(
    memory: SQLiteSessionMemory, proc: int, thread: int, turns: int, errors: list[str]
) -> None:
    for turn in range(turns):
        try:
            last = await memory.get_messages(own_session(proc, thread), limit=1)
            _check_previous_turn(last, proc, thread, turn)
            items = turn_items(proc, thread, turn)
            await memory.add_messages(own_session(proc, thread), items)
            await memory.add_messages(shared_session(proc, thread), items)
        except Exception:
            errors.append(traceback.format_exc())


@_reporting
def load_worker(conn: Connection, path: str, proc: int, threads: int, turns: int) -> None:
    """Run ``threads`` writers of ``turns`` turns each on one store, once told to go.

    Even-numbered processes use blocking ``SQLiteStore`` calls from real threads; odd ones
    use ``SQLiteSessionMemory`` from asyncio tasks on ``threads`` worker threads. Sends
    ``("ready",)`` once the store is open, waits for ``"go"``, then sends
    ``("done", {"errors": [...], "seconds": ...})``.
    """
    errors: list[str] = []
    if proc % 2 == 0:
        store = SQLiteStore(path)
        conn.send(("ready",))
        assert conn.recv() == "go"
        began = time.perf_counter()
        workers = [
            threading.Thread(target=_load_thread, args=(store, proc, t, turns, errors))
            for t in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        store.close()
    else:
        memory = SQLiteSessionMemory(path, max_threads=threads)
        conn.send(("ready",))
        assert conn.recv() == "go"
        began = time.perf_counter()

        async def main() -> None:
            await asyncio.gather(
                *(_load_task(memory, proc, t, turns, errors) for t in range(threads))
            )

        asyncio.run(main())
        memory.close()
    conn.send(("done", {"errors": errors, "seconds": time.perf_counter() - began}))


# -- crashes ------------------------------------------------------------------------------

CRASH_SESSIONS = 3


def batch_items(batch: int, size: int, pad: int) -> list[dict[str, Any]]:
    """Batch ``batch``: ``size`` messages ``batch:0 .. batch:size-1``, each padded."""
    return [
        {"role": "user", "content": f"{batch}:{i} " + "x" * pad, "batch": batch, "i": i, "n": size}
        for i in range(size)
    ]


def crash_session(batch: int) -> str:
    return f"s{batch % CRASH_SESSIONS}"


@_reporting
def crash_writer(conn: Connection, path: str, first_batch: int, seed: int) -> None:
    """Add batches ``first_batch, first_batch + 1, ...`` until killed.

    Sends ``("opening",)`` just before opening the store (which may create the schema),
    ``("open",)`` once open, and ``("ack", k)`` only after ``add_messages`` for batch ``k``
    has returned. Batches have 1-40 messages of 0-4,000 characters (seeded).
    """
    rng = random.Random(seed)
    conn.send(("opening",))
    store = SQLiteStore(path)
    conn.send(("open",))
    batch = first_batch
    while True:
        store.add_messages(
            crash_session(batch), batch_items(batch, rng.randint(1, 40), rng.randint(0, 4000))
        )
        conn.send(("ack", batch))
        batch += 1


@_reporting
def statement_killer(
    conn: Connection, path: str, phase: str, kill_at: int, batch: list[dict[str, Any]]
) -> None:
    """SIGKILL this process just before SQLite statement number ``kill_at`` runs.

    ``phase`` is ``"open"`` (count from the first statement of opening the store) or
    ``"add"`` (open first, then count from the first statement of adding ``batch``). If
    the count never reaches ``kill_at`` (0 never does), sends ``("survived", statements)``,
    the statements run in that phase, in order.
    """
    statements: list[str] = []
    armed = phase == "open"
    real_connect = sqlite3.connect

    def trace(statement: str) -> None:
        if armed:
            statements.append(statement)
            if len(statements) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = real_connect(*args, **kwargs)
        connection.set_trace_callback(trace)
        return connection

    sqlite3.connect = connect  # type: ignore[assignment]  # this child process only
    store = SQLiteStore(path)
    if phase == "add":
        armed = True
        store.add_messages("s", batch)
    conn.send(("survived", statements))
    store.close()


# -- lock contention ----------------------------------------------------------------------


@_reporting
def write_lock_holder(conn: Connection, path: str) -> None:
    """Hold the database's write lock, with a row written but not committed, until told.

    Sends ``("holding",)``; on ``"rollback"`` or ``"commit"`` ends the transaction that way
    and sends ``("released",)``. A plain sqlite3 connection: any other writer would do.
    """
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO agentsession_sessions "
        "(session_id, created_at, updated_at, message_count, last_seq) "
        "VALUES ('held', 0, 0, 1, 1)"
    )
    db.execute(
        "INSERT INTO agentsession_messages (session, seq, created_at, message) "
        "VALUES (last_insert_rowid(), 1, 0, '{\"uncommitted\":true}')"
    )
    conn.send(("holding",))
    command = conn.recv()
    db.execute(command.upper())
    conn.send(("released",))
    db.close()


@_reporting
def setup_lock_holder(conn: Connection, lock_file: str) -> None:
    """Hold the schema set-up lock file until told to let go."""
    import filelock

    lock = filelock.FileLock(lock_file)
    lock.acquire()
    conn.send(("holding",))
    conn.recv()
    lock.release()
    conn.send(("released",))


# -- files --------------------------------------------------------------------------------


def _outcome(step: str, action: Callable[[], object]) -> dict[str, Any]:
    try:
        value = action()
    except Exception as exc:
        return {
            "step": step,
            "ok": False,
            "type": type(exc).__name__,
            "store_error": isinstance(exc, StoreError),
            "message": str(exc),
            "cause": type(exc.__cause__).__name__ if exc.__cause__ else None,
        }
    return {"step": step, "ok": True, "value": value}


@_reporting
def unprivileged_user(conn: Connection, uid: int, path: str) -> None:
    """As ``uid`` (if we are root), open ``path``, read session ``s``, add one message.

    Sends ``("outcomes", [...])``: one dict per step reached, the failing step last.
    """
    drop_privileges(uid)
    outcomes: list[dict[str, Any]] = []
    holder: list[SQLiteStore] = []
    steps: list[tuple[str, Callable[[], object]]] = [
        ("open", lambda: holder.append(SQLiteStore(path))),
        ("read", lambda: len(holder[0].get_messages("s"))),
        ("write", lambda: holder[0].add_messages("s", [{"role": "user", "content": "new"}])),
    ]
    for step, action in steps:
        outcomes.append(_outcome(step, action))
        if not outcomes[-1]["ok"]:
            break
    for store in holder:
        store.close()
    conn.send(("outcomes", outcomes))


def _modes(path: str) -> dict[str, int]:
    real = os.path.realpath(path)
    names = {"db": real, "wal": real + "-wal", "shm": real + "-shm", "lock": path + ".lock"}
    return {
        key: os.stat(name).st_mode & 0o777 for key, name in names.items() if os.path.exists(name)
    }


@_reporting
def private_files(conn: Connection, path: str) -> None:
    """With umask 000 (the most permissive), create a database, write, close, reopen.

    Sends ``("modes", created, reopened)``: the permission bits of the database (where a
    symlink points, if it is one), its WAL, its shared-memory file and its set-up lock
    file while open, after creating and after reopening (SQLite recreates WAL and SHM).
    """
    os.umask(0)
    store = SQLiteStore(path)
    store.add_messages("s", [{"role": "user", "content": "secret"}])
    created = _modes(path)
    store.close()
    store = SQLiteStore(path)
    store.add_messages("s", [{"role": "user", "content": "secret"}])
    reopened = _modes(path)
    store.close()
    conn.send(("modes", created, reopened))


# -- disk full ----------------------------------------------------------------------------


def big_batch(attempt: int, size: int = 40, chars: int = 10_000) -> list[dict[str, Any]]:
    """About ``size * chars`` characters of messages marked with their attempt."""
    return [
        {"role": "user", "content": f"attempt {attempt} " + "y" * chars, "attempt": attempt, "i": i}
        for i in range(size)
    ]


def _sizes(path: str) -> int:
    return max(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


@_reporting
def file_size_limited_writer(conn: Connection, path: str) -> None:
    """Fill the file-size limit (``RLIMIT_FSIZE``) with a big add, then lift it and retry.

    Sends ``("done", {...})`` with the failed add's outcome, the history read right after
    it, and the retried add's outcome.
    """
    store = SQLiteStore(path)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (_sizes(path) + 8192, hard))
    failed = _outcome("add", lambda: store.add_messages("s", big_batch(1)))
    history = _outcome("read", lambda: store.get_messages("s"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    retried = _outcome("retry", lambda: store.add_messages("s", big_batch(2)))
    store.close()
    conn.send(("done", {"failed": failed, "history": history, "retried": retried}))


@_reporting
def full_disk_writer(conn: Connection, path: str, filler: str) -> None:
    """On a small file system: fill it, try a big add, free the space, retry.

    Sends ``("done", {...})`` like ``file_size_limited_writer``.
    """
    store = SQLiteStore(path)
    chunk = b"\0" * 65536
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError:
            pass
    failed = _outcome("add", lambda: store.add_messages("s", big_batch(1)))
    history = _outcome("read", lambda: store.get_messages("s"))
    os.remove(filler)
    retried = _outcome("retry", lambda: store.add_messages("s", big_batch(2)))
    store.close()
    conn.send(("done", {"failed": failed, "history": history, "retried": retried}))


# -- fork ---------------------------------------------------------------------------------


def fork_items(who: str, turn: int) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"{who} turn {turn} q", "w": who, "turn": turn, "i": 0, "n": 2},
        {
            "role": "assistant",
            "content": f"{who} turn {turn} a",
            "w": who,
            "turn": turn,
            "i": 1,
            "n": 2,
        },
    ]


def _forked_worker(memory: SQLiteSessionMemory, worker: int, turns: int) -> None:
    who = f"worker-{worker}"

    async def serve() -> None:
        for turn in range(turns):
            items = fork_items(who, turn)
            history = await memory.get_messages(who)
            assert len(history) == 2 * turn, (who, turn, len(history))
            await memory.add_messages(who, items)
            await memory.add_messages("shared", items)

    asyncio.run(serve())
    # The blocking API of the same memory works in the child too.
    memory.store.add_messages(f"{who}-sync", fork_items(who, 0))
    assert memory.store.get_messages(f"{who}-sync") == fork_items(who, 0)
    # A worker shutting down closes its memory; that must not disturb the others.
    memory.close()


@_reporting
def preforking_server(conn: Connection, path: str, workers: int, turns: int) -> None:
    """A preforking server: create and use a memory, fork ``workers`` children, serve.

    Before forking, the memory has served requests (its worker threads, idle now, and
    their connections stay) and the main thread holds an open connection, which every
    child inherits; each child starts worker threads of its own. Children
    serve ``turns`` turns each while this process keeps serving too. Sends
    ``("done", {...})`` with the children's exit codes and this process's checks.
    """
    memory = SQLiteSessionMemory(path)

    async def before_fork() -> None:
        await memory.add_messages("server", fork_items("server", 0))

    asyncio.run(before_fork())
    assert memory.store.get_messages("server") == fork_items("server", 0)
    # Fork with the memory's idle worker threads alive, as a preloaded app server does.
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    assert others and all(t.name.startswith("agentsession-store") for t in others), others
    children: list[int] = []
    for worker in range(workers):
        pid = os.fork()
        if pid == 0:  # the child: serve, then leave without running the parent's cleanup
            code = 0
            try:
                _forked_worker(memory, worker, turns)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        children.append(pid)
    for turn in range(1, turns + 1):
        memory.store.add_messages("server", fork_items("server", turn))
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]

    async def after_children() -> int:
        await memory.add_messages("server", fork_items("server", turns + 1))
        return len(await memory.get_messages("server"))

    server_count = asyncio.run(after_children())
    memory.close()
    conn.send(("done", {"codes": codes, "server_count": server_count}))
