"""SQLite-only behaviour: files, WAL, schema versions, connections, locks, fork."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import sqlite3
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agentsession import (
    RunRecord,
    SchemaError,
    SQLiteSessionMemory,
    SQLiteStore,
    StoreBusy,
    StoreError,
)
from agentsession.cli import cli
from agentsession.stores.sqlite.schema import SCHEMA_VERSION
from tests.reliability._workers import join_anyio_threads


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_file_history_survives_a_new_store_object(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with SQLiteStore(path) as first:
        first.add_messages("s", [user("remember me")])
    with SQLiteStore(str(path)) as second:
        assert second.get_messages("s") == [user("remember me")]


def test_database_and_its_wal_files_are_readable_by_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    old_umask = os.umask(0o022)
    try:
        with SQLiteStore(path) as store:
            store.add_messages("s", [user("secret")])
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(f.exists() for f in files)
            for f in files:
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        os.umask(old_umask)


def test_file_database_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_database_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer agentsession"):
        SQLiteStore(path)


def test_a_file_that_is_not_sqlite_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, long enough to look like a header " * 10)
    with pytest.raises(SchemaError, match="notes.txt is not a SQLite database") as info:
        SQLiteStore(path)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_bad_paths_are_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"{tmp_path}.*directory"):
        SQLiteStore(tmp_path)
    with pytest.raises(StoreError, match="missing.*does not exist"):
        SQLiteStore(tmp_path / "missing" / "x.db")
    with pytest.raises(TypeError, match="path"):
        SQLiteStore(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStore(tmp_path / "x.db", busy_timeout=0)
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "x.db", synchronous="SOMETIMES")


def test_a_corrupt_row_does_not_hide_the_valid_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "corrupt.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", [user("1"), user("2"), user("3")])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE agentsession_messages SET message = 'not json{' WHERE seq = 2")
    conn.commit()
    conn.close()
    with SQLiteStore(path) as store, caplog.at_level(logging.WARNING, "agentsession"):
        assert store.get_messages("s") == [user("1"), user("3")]
        assert "corrupt" in caplog.text
        assert store.pop_message("s") == user("3")
        assert store.pop_message("s") == user("1")


def test_a_window_counts_only_valid_rows_when_the_newest_are_corrupt(tmp_path: Path) -> None:
    # As the SDK's SQLiteSession: corrupt rows among the newest do not count toward the
    # limit, for a tool-safe window and for a run's first read (lock_and_read) too.
    path = tmp_path / "corrupt.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", [user(str(n)) for n in range(1, 8)])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE agentsession_messages SET message = 'not json{' WHERE seq >= 4")
    conn.commit()
    conn.close()
    with SQLiteStore(path) as store:
        assert store.get_messages("s", 2) == [user("2"), user("3")]
        assert store.get_messages("s", 2, tool_safe=False) == [user("2"), user("3")]
        assert store.get_messages("s", 5) == [user("1"), user("2"), user("3")]
        assert store.lock_and_read("s", "run", 5, 2) == [user("2"), user("3")]
        store.unlock("s", "run")


def test_in_memory_database_is_shared_by_threads_but_not_by_objects() -> None:
    first, second = SQLiteStore(), SQLiteStore()
    thread = threading.Thread(target=first.add_messages, args=("s", [user("from thread")]))
    thread.start()
    thread.join()
    assert first.get_messages("s") == [user("from thread")]
    assert second.get_messages("s") == []
    first.close()
    second.close()


def test_writer_waits_then_fails_clearly_when_the_lock_is_held(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    store.add_messages("s", [user("before")])
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreBusy, match="busy_timeout=0.2") as info:
        store.add_messages("s", [user("during")])
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    # Reads are not blocked by the writer.
    assert store.get_messages("s") == [user("before")]
    blocker.execute("ROLLBACK")
    blocker.close()
    store.add_messages("s", [user("after")])
    assert store.get_messages("s") == [user("before"), user("after")]
    store.close()


def test_connections_are_reused_across_loops_and_closed_with_their_threads(
    tmp_path: Path,
) -> None:
    threads_before = set(threading.enumerate())
    memory = SQLiteSessionMemory(tmp_path / "churn.db", max_threads=4)
    opened = memory.store.connections_opened

    async def one_request(n: int) -> None:
        await memory.add_messages(f"s{n}", [user("hi")])
        await memory.get_messages(f"s{n}")

    for n in range(30):
        # Each asyncio.run is a new loop, as a script would make; the memory's worker
        # threads serve them all, each with the one connection it opened first.
        asyncio.run(one_request(n))
    assert memory.store.connections_opened - opened <= 4
    # Threads of the application's own open a connection each, closed when they end.
    threads = [threading.Thread(target=memory.store.get_messages, args=("s0",)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    join_anyio_threads(threads_before)
    gc.collect()
    assert memory.store.connections_opened - opened >= 20
    assert memory.store.connection_count <= 1 + 4
    memory.close()
    assert memory.store.connection_count == 0
    assert set(threading.enumerate()) <= threads_before


def _add_in_child(path: str, n: int) -> None:
    store = SQLiteStore(path)
    for i in range(20):
        store.add_messages(f"proc-{n}", [user(f"{n}.{i}.a"), user(f"{n}.{i}.b")])
        store.add_messages("shared", [user(f"{n}.{i}")])
    store.close()


def test_processes_create_the_schema_once_and_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "procs.db")
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_add_in_child, args=(path, n)) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    with SQLiteStore(path) as store:
        for n in range(4):
            texts = [m["content"] for m in store.get_messages(f"proc-{n}")]
            assert texts == [f"{n}.{i}.{x}" for i in range(20) for x in "ab"]
        assert len(store.get_messages("shared")) == 80
    conn = sqlite3.connect(path)
    applied = conn.execute("SELECT name FROM _sqlite_migrations").fetchall()
    conn.close()
    assert applied == [
        ("0001_sessions_and_messages",),
        ("0002_metadata_search_locks",),
        ("0003_fts_off_the_write_path",),
        ("0004_usage_ledger",),
        ("0005_encryption",),
        ("0006_compaction",),
        ("0007_history_generation",),
    ]


def test_a_version_1_database_is_migrated_with_its_history(tmp_path: Path) -> None:
    from sqlite_utils import Database

    from agentsession.stores.sqlite.schema import migrations

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.apply(Database(conn), stop_before="0002_metadata_search_locks")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO agentsession_sessions VALUES (1, 'old', 1.0, 2.0, 2, 2)",
    )
    conn.executemany(
        "INSERT INTO agentsession_messages (session, seq, created_at, message) VALUES (1,?,1.0,?)",
        [(1, '{"role": "user", "content": "golden gate bridge"}'), (2, "corrupt{")],
    )
    conn.close()

    with SQLiteStore(path) as store:
        assert store.get_messages("old") == [user("golden gate bridge")]
        store.add_messages("old", [user("after the migration")])
        # A search first brings the full-text index up to date (see stores.sqlite.fts).
        assert [h.message for h in store.search("migration")] == [user("after the migration")]
        # The usage ledger (migration 0004) starts empty and takes records.
        assert store.usage("old").runs == 0
        now = datetime.now(timezone.utc)
        run = RunRecord("r", "old", now, now, "A", "m", 1, 2, 3, 5, 0, 0, 0, "failed")
        store.add_messages("old", [], run=run)
        assert store.runs("old") == [run]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    found = conn.execute(
        "SELECT text FROM agentsession_messages_fts WHERE agentsession_messages_fts MATCH ?",
        ("bridge OR migration",),
    ).fetchall()
    assert sorted(found) == [("after the migration",), ("golden gate bridge",)]
    assert conn.execute("SELECT metadata FROM agentsession_sessions").fetchall() == [("{}",)]
    conn.close()


def test_ttl_deletes_idle_sessions_when_writers_come_by(tmp_path: Path) -> None:
    from datetime import timedelta

    path = tmp_path / "ttl.db"
    with SQLiteStore(path) as store:
        store.add_messages("idle", [user("long ago")])
        store.add_messages("recent", [user("a while ago")])
    conn = sqlite3.connect(path)
    # "idle" was last active two hours ago, "recent" thirty minutes ago.
    conn.execute(
        "UPDATE agentsession_sessions SET updated_at = updated_at - 7200 WHERE session_id = 'idle'"
    )
    conn.execute(
        "UPDATE agentsession_sessions SET updated_at = updated_at - 1800 "
        "WHERE session_id = 'recent'"
    )
    conn.commit()
    conn.close()

    with SQLiteStore(path, ttl=timedelta(hours=1)) as store:
        assert store.get_messages("idle") == [user("long ago")]  # reads enforce nothing
        store.add_messages("new", [user("now")])  # a write enforces the TTL
        assert store.get_messages("idle") == []
        assert [s.session_id for s in store.list_sessions()] == ["new", "recent"]
    with pytest.raises(ValueError, match="ttl"):
        SQLiteStore(path, ttl=timedelta(0))


def _tables(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(name for (name,) in conn.execute("SELECT name FROM sqlite_master"))
    finally:
        conn.close()


def test_a_file_of_another_application_is_refused_unless_shared(tmp_path: Path) -> None:
    """One rule for the library and the command line: a SQLite file that holds another
    application's tables is not an agentsession database unless the caller says to share it."""
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match=r"holds tables of another application \(users\)"):
        SQLiteStore(path)
    with pytest.raises(SchemaError, match="shared_file=True"):
        SQLiteSessionMemory(path)
    assert _tables(path) == ["users"]  # nothing was added
    with SQLiteStore(path, shared_file=True) as store:
        store.add_messages("s", [{"role": "user", "content": "hi"}])
    assert "users" in _tables(path) and "agentsession_sessions" in _tables(path)
    with SQLiteStore(path) as store:  # now it has agentsession's tables: opened as any
        assert store.message_count("s") == 1
    listed = CliRunner().invoke(cli, ["sessions", "--db", str(path)])
    assert listed.exit_code == 0 and "s " in listed.output
    with pytest.raises(TypeError, match="shared_file"):
        SQLiteStore(tmp_path / "x.db", shared_file="yes")  # type: ignore[arg-type]


def test_a_read_only_store_reads_and_refuses_every_write(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", [{"role": "user", "content": "hello"}])
    for side in tmp_path.glob("chat.db?*"):  # the lease and set-up lock files
        side.unlink()
    with SQLiteStore(path, read_only=True) as store:
        assert store.get_messages("s") == [{"role": "user", "content": "hello"}]
        assert [info.session_id for info in store.list_sessions()] == ["s"]
        with pytest.raises(StoreError, match="is open read-only"):
            store.add_messages("s", [{"role": "user", "content": "more"}])
        with pytest.raises(StoreError, match="is open read-only"):
            store.clear_session("s")
        with pytest.raises(StoreError, match="is open read-only"):
            store.vacuum()
    # SQLite's own WAL files come and go; no lease or set-up lock file was created
    left = {p.name for p in tmp_path.iterdir()} - {"chat.db-wal", "chat.db-shm"}
    assert left == {"chat.db"}
    with pytest.raises(StoreError, match="no such file"):
        SQLiteStore(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()


def test_a_file_stamped_current_but_missing_a_lower_migration_gets_it(tmp_path: Path) -> None:
    # A file made by a version that had migration 0005 but not 0004 (added later, with a
    # lower number) is stamped 5 all the same: opening it applies 0004.
    from sqlite_utils import Database

    from agentsession.stores.sqlite.schema import migrations

    path = tmp_path / "gap.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", [user("kept")])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE agentsession_runs")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0004_usage_ledger'")
    assert [m.name for m in migrations.pending(Database(conn))] == ["0004_usage_ledger"]
    conn.close()
    with SQLiteStore(path) as store:
        now = datetime.now(timezone.utc)
        run = RunRecord("r", "s", now, now, "A", "m", 1, 2, 3, 5, 0, 0, 0, "failed")
        store.add_messages("s", [], run=run)
        assert store.runs("s") == [run]
        assert store.get_messages("s") == [user("kept")]
