"""Scale-out: several app-server processes on one PostgreSQL database, Redis server or
Redis Cluster.

The deployment the PostgreSQL and Redis memories are for: many app servers, one shared
conversation store. Every app server runs whole turns (user message, tool call, tool
output, reply) through the runner on sessions of its own and on sessions every server
writes to, all at once; nothing may be lost, reordered or interleaved.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import services

from . import _app_servers, _workers
from ._app_servers import own_session, shared_session, turn_id, turn_of
from ._workers import Scale

pytestmark = pytest.mark.timeout(900 if _workers.FULL_SIZE else 180)


@pytest.fixture(params=["postgres", "redis", "redis-cluster"])
def deployment(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(engine, server URL, namespace): a fresh schema or key prefix, removed afterwards."""
    kind = str(request.param)
    if kind == "postgres":
        target, namespace = services.postgres_dsn(), services.unique_name("agentsession_apps")
        yield kind, target, namespace
        services.drop_postgres_schema(namespace)
    else:
        cluster = kind == "redis-cluster"
        target = services.redis_cluster_url() if cluster else services.redis_url()
        namespace = services.unique_name("agentsession-apps")
        yield "redis", target, namespace
        services.drop_redis_prefix(namespace, target)


def test_app_servers_sharing_sessions_lose_reorder_and_interleave_nothing(
    deployment: tuple[str, str, str], scale: Scale, spawn: Callable[..., Any]
) -> None:
    """P app servers x W writers x T turns on own and shared sessions, all at once.

    Proves: no run fails; each own session holds exactly its writer's turns in order; each
    shared session holds every turn of every writer of every server, each turn's four
    items together, each writer's turns in the order it ran them; every model call was
    sent whole turns followed by its own input; the session records agree.
    """
    engine, target, namespace = deployment
    servers, writers, turns = scale(3, 4), scale(4, 8), scale(5, 25)
    # Set the schema up before the race, as a deployment's migration step would.
    _app_servers.make_memory(engine, target, namespace).close()
    started = [
        spawn(_app_servers.app_server, engine, target, namespace, p, writers, turns)
        for p in range(servers)
    ]
    for proc, conn in started:
        _workers.receive(conn, "ready", proc)
    began = time.perf_counter()
    for _, conn in started:
        conn.send("go")
    reports = [_workers.receive(conn, "done", proc, timeout=800)[1] for proc, conn in started]
    wall = time.perf_counter() - began
    for proc, _ in started:
        proc.join(30)
        assert proc.exitcode == 0, f"{proc.name} exit code {proc.exitcode}"
    errors = [tb for report in reports for tb in report["errors"]]
    assert not errors, f"{len(errors)} failed runs; the first:\n{errors[0]}"

    store = _app_servers.make_memory(engine, target, namespace).store
    try:
        shared_writers: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for p in range(servers):
            for w in range(writers):
                own = own_session(p, w)
                stored = [turn_of(item) for item in store.get_messages(own)]
                assert stored == [turn_id(p, w, t, own) for t in range(turns) for _ in range(4)]
                shared_writers[shared_session(p, w)].append((p, w))
        for session, members in shared_writers.items():
            items = store.get_messages(session)
            order = [turn_of(item) for item in items[::4]]
            assert [turn_of(item) for item in items] == [t for t in order for _ in range(4)]
            assert [item.get("type", "message") for item in items[:4]] == [
                "message",
                "function_call",
                "function_call_output",
                "message",
            ]
            for p, w in members:
                mine = [t for t in order if t.startswith(f"p{p}-w{w}-")]
                assert mine == [turn_id(p, w, t, session) for t in range(turns)], session
            assert len(order) == len(members) * turns
        counts = {info.session_id: info.message_count for info in store.list_sessions()}
        assert len(counts) == servers * writers + len(shared_writers)
        assert sum(counts.values()) == servers * writers * turns * 2 * 4
    finally:
        store.close()
    runs = servers * writers * turns * 2
    where = "redis cluster" if "cluster=true" in target else engine
    _workers.figure(
        f"app servers on {where}: {servers} processes x {writers} writers x {turns} turns "
        f"x 2 sessions = {runs} runs in {wall:.1f} s, 0 lost, 0 interleaved"
    )
