"""PostgreSQL-only behaviour: set-up racing, versions, pools, errors, fork, server clock.

The conformance suite (``tests/conformance``) runs every ``Store`` promise on PostgreSQL
too; this file covers what it cannot see. Each test works in a schema of its own,
dropped afterwards (see ``tests/services.py``).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool, PoolTimeout

from agentsession import (
    MissingDependencyError,
    SchemaError,
    StoreBusy,
    StoreClosed,
    StoreError,
)
from agentsession.stores.postgres import PostgresStore
from agentsession.stores.postgres.schema import MIGRATIONS, SCHEMA_VERSION, VERSIONS
from tests import services
from tests.conftest import run_in_threads

pytestmark = pytest.mark.services

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture
def schema() -> Iterator[str]:
    services.postgres_dsn()  # skips (or fails, in CI) when no server answers
    name = services.unique_name("agentsession_test")
    yield name
    services.drop_postgres_schema(name)


@pytest.fixture
def make(schema: str) -> Iterator[Callable[..., PostgresStore]]:
    """``make(**kwargs)``: a ``PostgresStore`` on the test schema, closed after the test."""
    made: list[PostgresStore] = []

    def factory(conninfo: Any = None, **kwargs: Any) -> PostgresStore:
        kwargs.setdefault("schema", schema)
        store = PostgresStore(services.postgres_dsn() if conninfo is None else conninfo, **kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


def _sql(query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(services.postgres_dsn(), autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- schema set-up -------------------------------------------------------------------------


def test_many_stores_setting_up_one_fresh_schema_at_once_migrate_it_once(
    schema: str, make: Callable[..., PostgresStore]
) -> None:
    stores: list[PostgresStore] = []
    lock = threading.Lock()

    def open_store(n: int) -> None:
        store = make(min_size=0, max_size=2)
        with lock:
            stores.append(store)
        store.add_messages(f"s{n}", [user(str(n))])

    run_in_threads(8, open_store)
    assert len(stores) == 8
    rows = _sql(f'SELECT version, name FROM "{schema}".{VERSIONS} ORDER BY version')
    assert rows == [(m.version, m.name) for m in MIGRATIONS]
    assert [info.message_count for info in stores[0].list_sessions()] == [1] * 8


def test_processes_setting_up_one_fresh_schema_at_once_all_succeed(schema: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from agentsession.stores.postgres import PostgresStore
        print("ready", flush=True)
        sys.stdin.readline()  # released together
        store = PostgresStore({services.postgres_dsn()!r}, schema={schema!r}, min_size=0)
        store.add_messages("shared", [{{"role": "user", "content": sys.argv[1]}}])
        store.close()
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=_REPO,
        )
        for n in range(3)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert _sql(f'SELECT count(*) FROM "{schema}".{VERSIONS}') == [(len(MIGRATIONS),)]
    with PostgresStore(services.postgres_dsn(), schema=schema) as store:
        contents = sorted(m["content"] for m in store.get_messages("shared"))
    assert contents == ["0", "1", "2"]


def test_a_schema_set_up_by_a_newer_version_is_refused(
    schema: str, make: Callable[..., PostgresStore]
) -> None:
    make().close()
    _sql(
        f'INSERT INTO "{schema}".{VERSIONS} (version, name) VALUES (%s, %s)',
        (SCHEMA_VERSION + 1, "from_the_future"),
    )
    with pytest.raises(SchemaError, match=f"newer agentsession.*{SCHEMA_VERSION + 1}"):
        make()


def test_a_migration_numbered_below_the_newest_applied_one_is_still_applied(
    schema: str, make: Callable[..., PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Migrations merged out of number order: a schema at the newest version must still
    # get a lower-numbered migration it has never had.
    from agentsession.stores.postgres import schema as setup

    make().close()
    late = setup.Migration(2, "0002_late", ("COMMENT ON TABLE {sessions} IS 'late'",))
    known = (setup.MIGRATIONS[0], late, *setup.MIGRATIONS[1:])
    monkeypatch.setattr(setup, "MIGRATIONS", known)
    monkeypatch.setattr(setup, "_KNOWN", frozenset(m.version for m in known))
    make().close()
    assert (2,) in _sql(f'SELECT version FROM "{schema}".{VERSIONS}')
    assert _sql(
        "SELECT obj_description(%s::regclass, 'pg_class')", (f'"{schema}".agentsession_sessions',)
    ) == [("late",)]


def test_an_existing_schema_of_the_callers_is_used_as_it_is(
    schema: str, make: Callable[..., PostgresStore]
) -> None:
    _sql(f'CREATE SCHEMA "{schema}"')
    _sql(f'CREATE TABLE "{schema}".unrelated (x int)')
    store = make()
    store.add_messages("s", [user("1")])
    assert _sql(f'SELECT count(*) FROM "{schema}".unrelated') == [(0,)]
    # Ids are stored as plain text: the tables stay readable with SQL.
    assert _sql(f'SELECT session_id, message_count FROM "{schema}".agentsession_sessions') == [
        ("s", 1)
    ]


def test_tables_dropped_while_in_use_raise_schema_error(
    schema: str, make: Callable[..., PostgresStore]
) -> None:
    store = make()
    store.add_messages("s", [user("1")])
    services.drop_postgres_schema(schema)
    with pytest.raises(SchemaError, match="missing") as caught:
        store.get_messages("s")
    assert isinstance(caught.value.__cause__, psycopg.Error)


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"schema": "bad-name"}, ValueError, "bad-name"),
        ({"schema": "pg_mine"}, ValueError, "pg_mine"),
        ({"schema": 5}, TypeError, "schema"),
        ({"min_size": True}, TypeError, "min_size"),
        ({"min_size": -1}, ValueError, "min_size"),
        ({"max_size": 0}, ValueError, "max_size"),
        ({"min_size": 4, "max_size": 2}, ValueError, "max_size"),
        ({"pool_timeout": 0}, ValueError, "pool_timeout"),
        ({"pool_timeout": "5"}, TypeError, "pool_timeout"),
        ({"ttl": timedelta(0)}, ValueError, "ttl"),
        ({"ttl": 60}, TypeError, "ttl"),
    ],
)
def test_bad_arguments_are_refused_before_connecting(
    kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        PostgresStore(f"postgresql://nobody@127.0.0.1:{_free_port()}/none", **kwargs)


def test_a_conninfo_of_the_wrong_type_or_syntax_is_refused() -> None:
    with pytest.raises(TypeError, match="conninfo"):
        PostgresStore(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="conninfo") as caught:
        PostgresStore("host=db password=hunter2 nonsense")
    assert "hunter2" not in str(caught.value)


def test_an_unreachable_server_names_the_host_never_the_password() -> None:
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        PostgresStore(f"postgresql://app:s3cret-pw@127.0.0.1:{port}/app", pool_timeout=5)
    assert time.monotonic() - started < 5  # a refused connection fails at once
    message = str(caught.value)
    assert f"127.0.0.1:{port}/app" in message and "s3cret-pw" not in message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_repr_and_errors_never_show_the_password(
    schema: str, make: Callable[..., PostgresStore]
) -> None:
    # The test server trusts local connections, so any password is accepted.
    dsn = services.postgres_dsn()
    secret = psycopg.conninfo.conninfo_to_dict(dsn).get("password") or "s3cret-pw"
    store = make(psycopg.conninfo.make_conninfo(dsn, password=secret))
    store.add_messages("s", [user("1")])
    assert secret not in repr(store) and schema in repr(store)
    services.drop_postgres_schema(schema)
    with pytest.raises(SchemaError) as caught:
        store.message_count("s")
    assert secret not in str(caught.value)


# -- pools ---------------------------------------------------------------------------------


def test_a_callers_pool_is_used_and_left_open(schema: str) -> None:
    # Its connections are not in autocommit mode: every method must still commit.
    with ConnectionPool(services.postgres_dsn(), min_size=1, max_size=2, open=True) as pool:
        store = PostgresStore(pool, schema=schema)
        assert store.pool is pool
        requests = pool.get_stats()["requests_num"]
        store.add_messages("s", [user("fox one"), user("two")])
        assert store.pop_message("s") == user("two")
        store.update_metadata("s", {"k": "v"})
        assert store.fork("s", "t") == 1
        assert [h.session_id for h in store.search("fox")] == ["s", "t"]
        store.vacuum()
        buffer = io.StringIO()
        assert store.export_jsonl(buffer) == 2
        assert store.prune(keep_last=0) == 2
        assert pool.get_stats()["requests_num"] > requests
        store.close()
        store.close()
        with pytest.raises(StoreClosed):
            store.get_messages("s")
        assert not pool.closed
        with pool.connection() as conn:
            table = f'"{schema}".agentsession_sessions'
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
        assert PostgresStore(pool, schema=schema).session_info("s").metadata == {"k": "v"}


def test_a_closed_callers_pool_is_a_store_error(schema: str) -> None:
    pool = ConnectionPool(services.postgres_dsn(), min_size=1, max_size=1, open=True)
    store = PostgresStore(pool, schema=schema)
    pool.close()
    with pytest.raises(StoreError, match="closed by its owner"):
        store.get_messages("s")


def test_an_exhausted_pool_raises_store_busy_after_pool_timeout(
    make: Callable[..., PostgresStore],
) -> None:
    store = make(min_size=1, max_size=1, pool_timeout=0.3)
    store.add_messages("s", [user("1")])
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.pool.connection():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        started = time.monotonic()
        with pytest.raises(StoreBusy, match="pool_timeout=0.3") as caught:
            store.add_messages("s", [user("2")])
        assert time.monotonic() - started >= 0.3
        assert isinstance(caught.value.__cause__, PoolTimeout)
    finally:
        release.set()
        holder.join()
    assert store.get_messages("s") == [user("1")]  # nothing of the failed add was stored


def test_close_closes_the_stores_own_pool(make: Callable[..., PostgresStore]) -> None:
    store = make()
    pool = store.pool
    store.add_messages("s", [user("1")])
    store.close()
    assert pool.closed
    with pytest.raises(StoreClosed):
        store.add_messages("s", [user("2")])


def test_a_dead_connection_fails_a_write_and_is_replaced(
    make: Callable[..., PostgresStore],
) -> None:
    store = make(min_size=1, max_size=1)
    store.add_messages("s", [user("1")])

    def kill_pooled_connection() -> None:
        with store.pool.connection() as conn:
            pid = conn.info.backend_pid
        _sql("SELECT pg_terminate_backend(%s, 10000)", (pid,))

    kill_pooled_connection()
    assert store.get_messages("s") == [user("1")]  # a read is tried again
    kill_pooled_connection()
    host = str(psycopg.conninfo.conninfo_to_dict(services.postgres_dsn()).get("host"))
    with pytest.raises(StoreError, match=host) as caught:
        store.add_messages("s", [user("2")])
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    store.add_messages("s", [user("3")])  # the pool opened a new connection
    assert store.get_messages("s") == [user("1"), user("3")]


# -- order, clocks, leases, ids ------------------------------------------------------------


def test_two_app_servers_adding_to_one_session_keep_batches_whole_and_ordered(
    make: Callable[..., PostgresStore],
) -> None:
    servers = [make(max_size=4), make(max_size=4)]

    def writer(n: int) -> None:
        store = servers[n % 2]
        for batch in range(20):
            store.add_messages("shared", [user(f"{n}:{batch}:{i}") for i in range(3)])

    run_in_threads(8, writer)
    texts = [m["content"] for m in servers[0].get_messages("shared")]
    assert len(texts) == 8 * 20 * 3 and servers[1].message_count("shared") == len(texts)
    batches = [texts[i : i + 3] for i in range(0, len(texts), 3)]
    for batch in batches:
        prefix = batch[0].rsplit(":", 1)[0]
        assert batch == [f"{prefix}:{i}" for i in range(3)]
    for n in range(8):
        assert [b[0].split(":")[1] for b in batches if b[0].startswith(f"{n}:")] == [
            str(b) for b in range(20)
        ]


def test_times_come_from_the_servers_clock(
    make: Callable[..., PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    (server_now,) = _sql("SELECT date_part('epoch', clock_timestamp())")[0]
    skewed = time.time() + 86400  # this app server's clock is a day fast
    monkeypatch.setattr(time, "time", lambda: skewed)
    store.add_messages("s", [user("1")])
    info = store.session_info("s")
    assert abs(info.updated_at.timestamp() - server_now) < 60
    assert store.prune(older_than=timedelta(hours=1)) == 0  # not "a day idle"
    assert store.expire_idle(timedelta(hours=1)) == 0
    assert store.try_lock("s", "run-1", 60)
    assert not store.try_lock("s", "run-2", 60)


def test_a_lease_is_an_advisory_lock_held_until_unlocked_or_its_connection_goes(
    schema: str, make: Callable[..., PostgresStore]
) -> None:
    first, second = make(), make()  # two stores on one schema, as two app servers have
    assert first.try_lock("s", "a", 30)
    assert first.try_lock("s", "a", 30)  # renewed by its owner
    assert not first.try_lock("s", "b", 30)  # another run of the same process
    assert not second.try_lock("s", "c", 30)  # a run of another process
    # Taking a lease wrote nothing: it is a lock the server keeps in memory.
    assert _sql(f'SELECT count(*) FROM "{schema}".agentsession_locks') == [(0,)]
    assert _sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")[0][0] >= 1
    first.unlock("s", "b")  # not b's: nothing happens
    assert not second.try_lock("s", "c", 30)
    first.unlock("s", "a")
    assert second.try_lock("s", "c", 30)
    second.close()  # its lease connection goes, and the lease with it
    assert first.try_lock("s", "a", 30)
    with pytest.raises(ValueError, match="lease"):
        first.try_lock("s", "a", 0)


_HOLD_A_LEASE = """
import sys, threading
from agentsession.stores.postgres import PostgresStore
store = PostgresStore(sys.argv[1], schema=sys.argv[2])
assert store.try_lock("held", "dying-run", 30)
print("holding", flush=True)
threading.Event().wait()
"""


def test_a_killed_process_releases_its_leases_at_once(
    schema: str, make: Callable[..., PostgresStore]
) -> None:
    store = make()
    store.add_messages("held", [{"role": "user", "content": "hi"}])
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_LEASE, services.postgres_dsn(), schema],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "holding\n"
        assert not store.try_lock("held", "next-run", 30)
        # Pruning leaves a session alone while any process's run holds it.
        assert store.prune(older_than=timedelta(0)) == 0
    finally:
        child.kill()
        child.wait(timeout=30)
    # The server ends the dead client's backend as soon as its socket closes; the lease
    # is free well within the documented few seconds, with no expiry to wait for.
    deadline = time.monotonic() + 5
    while not store.try_lock("held", "next-run", 30):
        assert time.monotonic() < deadline, "the dead process's lease was still held after 5 s"
        time.sleep(0.01)
    store.unlock("held", "next-run")
    assert store.prune(older_than=timedelta(0)) == 1


def test_ids_and_metadata_with_nul_round_trip(make: Callable[..., PostgresStore]) -> None:
    store = make()
    odd_ids = ["nul\x00byte", "\uffff", "\uffff0", "\x00", "plain"]
    for session_id in odd_ids:
        store.add_messages(session_id, [user(session_id)])
    assert sorted(info.session_id for info in store.list_sessions()) == sorted(odd_ids)
    for session_id in odd_ids:
        assert store.get_messages(session_id) == [user(session_id)]
    metadata = {"k\x00": "v\x00\uffff", "nested": ["\x00"], "plain": 1}
    store.set_metadata("nul\x00byte", metadata)
    assert store.session_info("nul\x00byte").metadata == metadata
    assert [i.session_id for i in store.list_sessions(metadata={"k\x00": "v\x00\uffff"})] == [
        "nul\x00byte"
    ]
    assert store.update_metadata("nul\x00byte", {"x": 1}, remove=["k\x00"]) == {
        "nested": ["\x00"],
        "plain": 1,
        "x": 1,
    }
    with pytest.raises(ValueError, match="surrogate"):
        store.set_metadata("s", {"bad": "\ud800"})
    buffer = io.StringIO()
    store.export_jsonl(buffer, session_ids=["nul\x00byte"])
    assert json.loads(buffer.getvalue().split("\n")[0])["session_id"] == "nul\x00byte"


def test_a_message_too_big_to_index_whole_is_stored_and_found_by_its_start(
    make: Callable[..., PostgresStore],
) -> None:
    store = make()
    words = " ".join(f"w{n:07d}" for n in range(150_000))  # 1.35 MB of distinct words
    big = {"role": "tool", "content": "needle " + words + " haystack"}
    store.add_messages("s", [big])
    assert store.get_messages("s") == [big]
    assert [h.position for h in store.search("needle")] == [1]
    assert store.search("haystack") == []  # past the indexed first 256 KiB


def test_ttl_is_enforced_by_writers(make: Callable[..., PostgresStore]) -> None:
    store = make(ttl=timedelta(minutes=30))
    header = {
        "type": "session",
        "version": 1,
        "session_id": "idle",
        "created_at": time.time() - 7200,
        "updated_at": time.time() - 3600,
        "message_count": 0,
        "metadata": {},
    }
    store.import_jsonl([json.dumps(header)])
    assert store.session_info("idle") is not None
    store.add_messages("live", [user("1")])
    assert store.session_info("idle") is None
    assert [i.session_id for i in store.list_sessions()] == ["live"]


# -- fork and missing driver ---------------------------------------------------------------


def _in_child(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child; its exit status (0 when it returned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_opens_its_own_pool_and_the_parent_keeps_working(
    make: Callable[..., PostgresStore],
) -> None:
    store = make(min_size=2, max_size=2)
    store.add_messages("parent", [user("before")])

    def child() -> None:
        assert store.get_messages("parent") == [user("before")]
        store.add_messages("child", [user("from the child")])
        store.close()

    assert _in_child(child) == 0
    store.add_messages("parent", [user("after")])
    assert store.get_messages("parent") == [user("before"), user("after")]
    assert store.get_messages("child") == [user("from the child")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_callers_pool_is_refused_in_a_forked_child(schema: str) -> None:
    with ConnectionPool(services.postgres_dsn(), min_size=1, max_size=1, open=True) as pool:
        store = PostgresStore(pool, schema=schema)
        store.add_messages("s", [user("1")])

        def child() -> None:
            with pytest.raises(StoreError, match="fork"):
                store.get_messages("s")

        assert _in_child(child) == 0
        assert store.get_messages("s") == [user("1")]


def test_without_psycopg_the_store_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    import agentsession

    for name in list(sys.modules):
        if name.startswith("agentsession.stores.") and "postgres" in name:
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'agentsession\[postgres\]'"):
        importlib.import_module("agentsession.stores.postgres")
    with pytest.raises(MissingDependencyError, match="PostgresStore"):
        agentsession.PostgresSessionMemory("postgresql://localhost/app")
    with pytest.raises(ImportError):  # MissingDependencyError is an ImportError too
        agentsession.PostgresStore  # noqa: B018


def test_import_agentsession_works_without_psycopg() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["psycopg"] = None
        sys.modules["psycopg_pool"] = None
        import agentsession
        memory = agentsession.SQLiteSessionMemory()
        memory.store.add_messages("s", [{"role": "user", "content": "hi"}])
        try:
            agentsession.PostgresSessionMemory("postgresql://localhost/app")
        except agentsession.MissingDependencyError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=_REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'agentsession[postgres]'" in done.stdout
