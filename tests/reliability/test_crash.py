"""Crashes: a writer killed with SIGKILL at any moment leaves a sound, complete database.

A process kill (not a power loss) is what is simulated: the operating system keeps what
the process had written, so every add that returned must survive it.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from agentsession import SQLiteStore
from agentsession.stores.sqlite.schema import migrations

from . import _workers
from ._workers import (
    CRASH_SESSIONS,
    Scale,
    batch_items,
    check_bookkeeping,
    drain,
    integrity_check,
    receive,
    schema_of,
    split_groups,
)

pytestmark = pytest.mark.timeout(900 if _workers.FULL_SIZE else 120)

#: After a random number of acknowledged batches, the kill comes this long later at most.
KILL_WINDOW = 0.005


def _killed(proc: Any) -> None:
    proc.kill()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL, f"{proc.name} exit code {proc.exitcode}"


def _verify(path: Path, acked: set[int], unacked_allowed: set[int], probe: int) -> set[int]:
    """Check the database after a kill; return the batches it holds.

    Sound (integrity_check, bookkeeping); every batch present is whole and contiguous and
    batches are in order; every acknowledged batch is present; nothing is present that no
    writer was adding; a fresh store opens and accepts a write.
    """
    if path.exists():
        assert integrity_check(path) == ["ok"]
    present: set[int] = set()
    with SQLiteStore(path) as store:
        check_bookkeeping(path)
        for session in range(CRASH_SESSIONS):
            order = split_groups(store.get_messages(f"s{session}"), lambda m: m["batch"])
            assert order == sorted(order), f"batches out of order in s{session}: {order}"
            assert len(set(order)) == len(order), f"a batch stored twice in s{session}"
            present.update(order)  # type: ignore[arg-type]
        missing = acked - present
        assert not missing, f"acknowledged batches lost: {sorted(missing)}"
        phantom = present - acked - unacked_allowed
        assert not phantom, f"batches no writer was adding: {sorted(phantom)}"
        store.add_messages("probe", [{"role": "user", "content": f"probe {probe}"}])
        assert store.get_messages("probe", limit=1) == [
            {"role": "user", "content": f"probe {probe}"}
        ]
    return present


def test_writer_killed_at_random_moments_loses_no_acknowledged_batch(
    tmp_path: Path, scale: Scale, spawn: Callable[..., Any]
) -> None:
    """SIGKILL a writer at random moments, K times: every acknowledged add survives whole.

    The child adds batches of 1-40 messages (each message names its batch, index and
    batch size) round-robin to three sessions, and reports each batch id through a pipe
    only after ``add_messages`` returned. The parent waits (by pipe reads) until the child
    is writing and a random number of batches (0-8) are acknowledged, then waits a random
    0-5 ms (the random moment of the kill, drawn from a seeded RNG; not synchronization)
    and kills it. The first child is killed a random moment while it opens the new
    database (within the time a first open took), usually while it creates the schema.

    Proves, after every kill: ``PRAGMA integrity_check`` is ok and the bookkeeping matches
    the rows; every batch present is complete and contiguous, in order; every
    acknowledged batch is present; the only unacknowledged batch that may be present is
    the one being written at the kill; the file opens and accepts writes. After the first
    kill the schema is complete.
    """
    kills = scale(10, 50)
    rng = random.Random(scale.seed)
    path = tmp_path / "crash.db"
    reference = tmp_path / "reference.db"
    SQLiteStore(reference).close()

    # How long opening a new database takes here, as the parent sees it.
    proc, conn = spawn(_workers.crash_writer, str(tmp_path / "timing.db"), 0, 0)
    receive(conn, "opening", proc)
    began = time.perf_counter()
    receive(conn, "open", proc)
    open_window = time.perf_counter() - began
    _killed(proc)

    # The first kill lands while the child opens a database that does not exist yet.
    proc, conn = spawn(_workers.crash_writer, str(path), 0, rng.randrange(2**32))
    receive(conn, "opening", proc)
    time.sleep(rng.uniform(0, open_window))
    _killed(proc)
    messages = drain(conn)
    version_at_kill = (
        schema_of(path)["user_version"] if path.exists() and path.stat().st_size else None
    )
    acked = {m[1] for m in messages if m[0] == "ack"}
    # Batches being written at a kill: present or not, both are right.
    in_flight = {max(acked, default=-1) + 1}
    present = _verify(path, acked, in_flight, probe=0)
    committed_unacked = len(in_flight & present)
    assert schema_of(path) == schema_of(reference)

    for round_ in range(1, kills + 1):
        first = max(present | acked, default=-1) + 1
        proc, conn = spawn(_workers.crash_writer, str(path), first, rng.randrange(2**32))
        receive(conn, "opening", proc)
        receive(conn, "open", proc)
        round_acks = {receive(conn, "ack", proc)[1] for _ in range(rng.randint(0, 8))}
        time.sleep(rng.uniform(0, KILL_WINDOW))
        _killed(proc)
        round_acks |= {m[1] for m in drain(conn) if m[0] == "ack"}
        acked |= round_acks
        batch = max(round_acks, default=first - 1) + 1
        in_flight.add(batch)
        present = _verify(path, acked, in_flight, probe=round_)
        committed_unacked += batch in present

    _workers.figure(
        f"crash: {kills} random SIGKILLs of a writer (plus 1 while opening a new file, which took "
        f"{open_window * 1000:.0f} ms, schema version {version_at_kill} at that kill); "
        f"{len(acked)} acknowledged batches, all present and whole; the batch being added "
        f"was committed (not yet acknowledged) at {committed_unacked} of {kills + 1} kills "
        f"and absent at the others"
    )


def _statements(spawn: Callable[..., Any], path: Path, phase: str, batch: Any) -> list[str]:
    proc, conn = spawn(_workers.statement_killer, str(path), phase, 0, batch)
    statements = receive(conn, "survived", proc)[1]
    proc.join(30)
    return statements  # type: ignore[no-any-return]


def _version_one_database(path: Path, history: list[dict[str, Any]]) -> None:
    """A database as the first schema version left it, holding ``history`` in session s."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    db = Database(conn)
    names = [migration.name for migration in migrations.pending(db)]
    migrations.apply(db, stop_before=names[1:])
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO agentsession_sessions "
        "(session_id, created_at, updated_at, message_count, last_seq) VALUES ('s', 0, 0, ?, ?)",
        (len(history), len(history)),
    )
    conn.executemany(
        "INSERT INTO agentsession_messages (session, seq, created_at, message) VALUES (1, ?, 0, ?)",
        [(seq, json.dumps(message)) for seq, message in enumerate(history, 1)],
    )
    conn.close()


#: At CI size, the most kill points a schema set-up test makes (every one at full size).
_CI_KILL_POINTS = 20


@pytest.mark.parametrize("start", ["creation", "migration"])
def test_killed_before_any_statement_of_schema_set_up_the_next_open_completes_it(
    start: str, tmp_path: Path, scale: Scale, spawn: Callable[..., Any]
) -> None:
    """SIGKILL a process just before each SQL statement of creating or migrating a schema.

    ``creation`` opens a file that does not exist; ``migration`` opens a file of the first
    schema version holding a conversation. A hook in the child (SQLite's trace callback)
    kills it before statement k of that open, for 20 values of k spread evenly over the
    statements that write or end a transaction (every k, reads and trigger steps
    included, at full size).

    Proves, for each k: the file is sound; a fresh open succeeds, accepts a write, keeps
    the conversation, and leaves exactly the schema a clean creation makes (tables,
    indexes, triggers, user_version, recorded migrations).
    """
    if start == "migration" and len(migrations.pending(Database(memory=True))) < 2:
        pytest.skip("there is only one schema version")
    history = batch_items(0, 3, 10) if start == "migration" else []

    def prepared(name: str) -> Path:
        path = tmp_path / name
        if start == "migration":
            _version_one_database(path, history)
        return path

    reference = tmp_path / "reference.db"
    SQLiteStore(reference).close()
    want = schema_of(reference)
    statements = _statements(spawn, prepared("count.db"), "open", [])
    points = [
        k
        for k, statement in enumerate(statements, 1)
        if scale.full or not statement.lstrip().lower().startswith(("select", "--"))
    ]
    if not scale.full and len(points) > _CI_KILL_POINTS:
        # At CI size, kill points spread evenly over the writing statements (the first
        # and the last included), so the test's time does not grow with each migration.
        step = (len(points) - 1) / (_CI_KILL_POINTS - 1)
        points = [points[round(i * step)] for i in range(_CI_KILL_POINTS)]
    incomplete: list[str] = []
    for k in points:
        path = prepared(f"killed-at-{k}.db")
        proc, conn = spawn(_workers.statement_killer, str(path), "open", k, [])
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL, (k, drain(conn))
        if path.exists():
            assert integrity_check(path) == ["ok"], k
        with SQLiteStore(path) as store:
            assert store.get_messages("s") == history, k
            store.add_messages("s", batch_items(1, 1, 0))
            assert store.get_messages("s") == history + batch_items(1, 1, 0), k
        if schema_of(path) != want:
            incomplete.append(f"killed before statement {k}: {statements[k - 1][:90]!r}")
    _workers.figure(
        f"schema {start}: killed before {len(points)} of its {len(statements)} SQL "
        f"statements; {len(points) - len(incomplete)} left a file whose next open completed "
        "the schema"
    )
    assert not incomplete, "schema left incomplete after a kill:\n" + "\n".join(incomplete)


def test_killed_before_any_statement_of_an_add_nothing_of_it_is_stored(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    """SIGKILL a writer just before each SQL statement of one add (BEGIN to COMMIT).

    Proves, for each statement: the file is sound, the history before the add is intact
    and none of the add is stored (it is all or nothing, and here nothing); a child not
    killed stores all of it.
    """
    history = batch_items(0, 3, 10)
    batch = batch_items(1, 5, 10)

    def prepared(name: str) -> Path:
        path = tmp_path / name
        with SQLiteStore(path) as store:
            store.add_messages("s", history)
        return path

    statements = _statements(spawn, prepared("count.db"), "add", batch)
    # The writer lowers the busy timeout around BEGIN IMMEDIATE (it retries from Python),
    # so the transaction is one or two statements in from each end.
    assert "BEGIN IMMEDIATE" in statements[:2] and "COMMIT" in statements[-2:], statements
    for k in range(1, len(statements) + 2):
        path = prepared(f"killed-at-{k}.db")
        proc, conn = spawn(_workers.statement_killer, str(path), "add", k, batch)
        proc.join(30)
        survived = k > len(statements)
        assert proc.exitcode == (0 if survived else -signal.SIGKILL), (k, drain(conn))
        assert integrity_check(path) == ["ok"], k
        check_bookkeeping(path)
        with SQLiteStore(path) as store:
            assert store.get_messages("s") == history + (batch if survived else []), k
            store.add_messages("s", batch_items(2, 1, 0))
    _workers.figure(f"add: killed before each of its {len(statements)} SQL statements")
