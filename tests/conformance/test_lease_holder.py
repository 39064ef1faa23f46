"""``Store.lease_holder``: a process waiting for a session can tell which run holds it.

A second process opens the same database and takes a session's run lease; this process
must name that process's real pid and host, on every engine a second process can share.
Where the engine finds the holder without reading the owner string (SQLite's locks in
``/proc``, PostgreSQL's ``pg_locks``), the holder takes the lease under an owner that
names nobody, so the answer cannot come from it. After the holder is killed with
SIGKILL, SQLite's and PostgreSQL's leases go with the process, while a Redis lease (a
key with an expiry) still names the dead process until it lapses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentsession import LeaseHolder
from tests.conftest import ENGINES

#: Store kinds a second process can open (a ":memory:" database is private to one).
SHARED = ["sqlite-file", "postgres", "redis", "redis-cluster"]

_HOLDER = """
import json, os, socket, sys

kind, where, session_id, owner = json.loads(sys.argv[1])
if kind == "sqlite-file":
    from agentsession import SQLiteStore
    store = SQLiteStore(where[0])
elif kind == "postgres":
    from agentsession.stores.postgres import PostgresStore
    store = PostgresStore(where[0], schema=where[1])
else:
    from agentsession.stores.redis import RedisStore
    store = RedisStore(where[0], prefix=where[1])
owner = owner or f"{socket.gethostname()}:{os.getpid()}:run:1"
assert store.try_lock(session_id, owner, 60)
print("holding", flush=True)
sys.stdin.readline()
store.unlock(session_id, owner)
print("released", flush=True)
sys.stdin.readline()
"""


def _where(kind: str, store: Any) -> list[str]:
    from tests import services

    if kind == "sqlite-file":
        return [str(store.path)]
    if kind == "postgres":
        return [services.postgres_dsn(), store.schema]
    url = services.redis_url() if kind == "redis" else services.redis_cluster_url()
    return [url, store.prefix]


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest, store_factory: Callable[[str], Any]) -> Any:
    return request.param, store_factory(request.param)


@pytest.fixture
def hold(shared: tuple[str, Any]) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """``hold(session_id)``: a process holding the session's lease until told to let go."""
    kind, store = shared
    started: list[subprocess.Popen[str]] = []
    # SQLite and PostgreSQL find the holder without the owner string: give them one
    # that names nobody. Redis keeps the owner as the lease's value: agentsession's form.
    owner = "" if ENGINES[kind] == "redis" else "an-owner-that-names-nobody"

    def start(session_id: str) -> subprocess.Popen[str]:
        args = json.dumps([kind, _where(kind, store), session_id, owner])
        process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline() == "holding\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(10)


def _poll(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_holder_is_the_other_process_until_it_lets_go(
    shared: tuple[str, Any], hold: Callable[[str], subprocess.Popen[str]]
) -> None:
    _, store = shared
    assert store.lease_holder("s") is None
    holder = hold("s")
    assert store.lease_holder("s") == LeaseHolder(holder.pid, socket.gethostname())
    assert store.lease_holder("other") is None
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline() == "released\n"
    assert store.lease_holder("s") is None


def test_a_lease_of_this_process_names_this_process(store: Any, store_kind: str) -> None:
    # Redis knows a holder only by its owner string: agentsession's "<host>:<pid>:" form.
    owner = "any-owner"
    if ENGINES[store_kind] == "redis":
        owner = f"{socket.gethostname()}:{os.getpid()}:mine"
    assert store.try_lock("s", owner, 60)
    try:
        assert store.lease_holder("s") == LeaseHolder(os.getpid(), socket.gethostname())
    finally:
        store.unlock("s", owner)
    assert store.lease_holder("s") is None
    assert store.try_lock("s", "names-nobody", 60)  # held, by nobody it can name
    assert store.lease_holder("s") is not None


def test_after_the_holder_is_killed(
    shared: tuple[str, Any], hold: Callable[[str], subprocess.Popen[str]]
) -> None:
    kind, store = shared
    holder = hold("s")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    if ENGINES[kind] == "sqlite":  # the kernel let go with the process: at once
        assert store.lease_holder("s") is None
        assert store.try_lock("s", "next", 1)
    elif ENGINES[kind] == "postgres":  # the server lets go when it sees the socket close
        assert _poll(lambda: store.lease_holder("s") is None)
    else:  # the lease key outlives the process until it lapses, and names it meanwhile
        assert store.lease_holder("s") == LeaseHolder(holder.pid, socket.gethostname())


def test_lease_holder_checks_its_argument(store: Any) -> None:
    with pytest.raises(TypeError):
        store.lease_holder(42)
    with pytest.raises(ValueError):
        store.lease_holder("")


def test_lease_holder_text() -> None:
    assert str(LeaseHolder(12, "box")) == "pid 12 on host box"
    assert str(LeaseHolder(None, "10.0.0.5")) == "host 10.0.0.5"
    assert str(LeaseHolder()) == ""
