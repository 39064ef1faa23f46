"""A process killed (SIGKILL) while a run holds a session's lease: how long the next run waits.

On every engine the next run on that session gets the lease within a short documented
bound (``docs/RELIABILITY.md``, "Killed lease holders"): at once on SQLite (an OFD lock
the kernel drops with the process) and PostgreSQL (an advisory lock the server drops
with the connection), within ``_run_guard.LEASE_SECONDS`` on Redis (a key that expires
unless renewed). The killed run stored nothing: no half turn is left behind.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agents.testing import ScriptedModel, assistant_message

from agentsession import Agent, RunConfig, Runner
from agentsession._run_guard import _MAX_PAUSE
from tests import services

from . import _app_servers, _workers

pytestmark = pytest.mark.timeout(120)

#: What the next run may wait past the lease's own bound: the runner's poll pause, and
#: the time to notice the death (a closed socket, on PostgreSQL) on a busy machine.
SLACK = _MAX_PAUSE + 1.0

#: Each engine's documented bound on the wait (seconds after the kill): the figures of
#: docs/RELIABILITY.md, not the code's constants, so a longer lease fails here.
BOUNDS = {"sqlite": 0.0, "postgres": 0.0, "redis": 5.0, "redis-cluster": 5.0}


@pytest.fixture(params=list(BOUNDS))
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, str, str, str]]:
    """(kind, engine, target, namespace) on a fresh database, schema or key prefix."""
    kind = str(request.param)
    if kind == "sqlite":
        yield kind, "sqlite", str(tmp_path / "sessions.db"), ""
    elif kind == "postgres":
        target, namespace = services.postgres_dsn(), services.unique_name("agentsession_kill")
        yield kind, "postgres", target, namespace
        services.drop_postgres_schema(namespace)
    else:
        cluster = kind == "redis-cluster"
        target = services.redis_cluster_url() if cluster else services.redis_url()
        namespace = services.unique_name("agentsession-kill")
        yield kind, "redis", target, namespace
        services.drop_redis_prefix(namespace, target)


def test_a_killed_lease_holder_delays_the_next_run_at_most_the_documented_bound(
    deployment: tuple[str, str, str, str], spawn: Callable[..., Any]
) -> None:
    """SIGKILL a process in the middle of a run; time the next run on the session.

    Proves: the next run gets the session within the engine's bound (plus the poll
    pause) and completes; the session then holds that run's turn only.
    """
    kind, engine, target, namespace = deployment
    memory = _app_servers.make_memory(engine, target, namespace)  # migrated before the race
    try:
        proc, conn = spawn(_app_servers.lease_holder, engine, target, namespace, "s")
        _workers.receive(conn, "holding", proc, timeout=60)
        proc.kill()
        killed = time.monotonic()
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL

        model = ScriptedModel([[assistant_message("next reply")]])
        agent = Agent(name="A", model=model)
        config = RunConfig(memory=memory, session_id="s", lock_timeout=60)
        result = Runner.run_sync(agent, "next turn", run_config=config)
        waited = time.monotonic() - killed
        assert result.final_output == "next reply"
        assert waited <= BOUNDS[kind] + SLACK, f"the next run waited {waited:.2f} s"
        stored = memory.store.get_messages("s")
        assert [item.get("content") for item in stored[:1]] == ["next turn"]
        assert len(stored) == 2  # the killed run's user message and tool call are not there
    finally:
        memory.close()
    _workers.figure(
        f"killed lease holder on {kind}: next run done {waited:.2f} s after the SIGKILL "
        f"(bound {BOUNDS[kind]:g} s + {SLACK:g} s)"
    )
