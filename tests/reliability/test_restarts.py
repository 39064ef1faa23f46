"""Server restarts under load: PostgreSQL (fast and immediate) and Redis with an AOF.

App-server processes run whole turns through the runner, from several threads each,
while a private server (``_private_servers``: never the shared one) is restarted.
Proves, for each engine and restart mode: every run that returned is stored whole;
no turn is stored in part or twice (a run that failed is stored whole or not at all);
every run that failed raised a ``StoreError`` subclass; every app server recovers by
itself (its memory is not reopened) and runs turns again soon after the restart. The
figures (outage, failed runs, recovery) are in ``docs/RELIABILITY.md``, measured with
``AGENTSESSION_FULL_SIZE=1 python -m pytest tests/reliability/test_restarts.py -rA``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentsession import StoreError, StoreMemory

from . import _app_servers, _private_servers, _workers
from ._app_servers import turn_of
from ._workers import Scale

pytestmark = [pytest.mark.services, pytest.mark.timeout(300 if _workers.FULL_SIZE else 120)]

#: A restart's recovery is measured from when the server answers again to each app
#: server's first run that returned after it; this bounds it (the runner's lease wait,
#: the pool's reconnect) so a stuck app server fails the test instead of hanging it.
RECOVERY_BOUND = 30.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[_private_servers.PrivatePostgres]:
    with _private_servers.private_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server() -> Iterator[_private_servers.PrivateRedis]:
    with _private_servers.private_redis() as server:
        yield server


def _stored(memory: StoreMemory) -> int:
    return sum(info.message_count for info in memory.store.list_sessions())


def _wait_for_growth(memory: StoreMemory, items: int, deadline: float) -> None:
    """Until ``items`` more items are stored than now (the app servers make progress).

    A read that fails (this process's connections break in the restart too) is tried
    again: this process is an app server of its own, recovering by itself.
    """
    goal: int | None = None
    while True:
        assert time.monotonic() < deadline, "the app servers stopped making progress"
        try:
            stored = _stored(memory)
        except StoreError:
            continue
        goal = stored + items if goal is None else goal
        if stored >= goal:
            return
        time.sleep(0.02)


def _wait_for_every_server(
    memory: StoreMemory, servers: int, writers: int, deadline: float
) -> None:
    """Until every app server has stored a turn it started after this call began.

    An app server's writers each alternate their own session and a shared one, so
    its own sessions grow by a whole turn (4 items) per turn run there. At most
    ``writers`` of its turns were under way when this began: once its own sessions
    hold ``writers + 1`` turns more, one of them started afterwards. (A run the
    restart broke may leave its session's lease to expire first: 5 s on Redis.)
    """
    own = [
        [_app_servers.own_session(proc, writer) for writer in range(writers)]
        for proc in range(servers)
    ]
    start: list[int] | None = None
    while True:
        assert time.monotonic() < deadline, "an app server stopped making progress"
        try:
            counts = {i.session_id: i.message_count for i in memory.store.list_sessions()}
        except StoreError:
            continue
        now = [sum(counts.get(session, 0) for session in sessions) for sessions in own]
        if start is None:
            start = now
        elif all(
            after - before >= 4 * (writers + 1) for after, before in zip(now, start, strict=True)
        ):
            return
        time.sleep(0.02)


def _restart_under_load(
    engine: str,
    target: str,
    namespace: str,
    restart: Callable[[], None],
    scale: Scale,
    spawn: Callable[..., Any],
    label: str,
) -> None:
    servers, writers = 2, scale(3, 6)
    memory = _app_servers.make_memory(engine, target, namespace)  # the schema, first
    try:
        started = [
            spawn(_app_servers.restart_runner, engine, target, namespace, p, writers)
            for p in range(servers)
        ]
        for proc, conn in started:
            _workers.receive(conn, "ready", proc)
        for _, conn in started:
            conn.send("go")
        deadline = time.monotonic() + 60
        _wait_for_growth(memory, servers * writers * 4 * scale(2, 10), deadline)
        down = time.time()
        restart()
        up = time.time()
        # Every app server must run whole turns again, on its own: wait for progress.
        _wait_for_growth(memory, servers * writers * 4 * scale(2, 10), time.monotonic() + 60)
        for _, conn in started:
            conn.send("stop")
        reports = [_workers.receive(conn, "done", proc, timeout=60)[1] for proc, conn in started]
        for proc, _ in started:
            proc.join(30)
            assert proc.exitcode == 0, f"{proc.name} exit code {proc.exitcode}"

        outcomes = [outcome for report in reports for outcome in report]
        not_store_errors = [o[2] for o in outcomes if o[2] is not None and not o[3]]
        assert not not_store_errors, f"runs failed with other errors: {not_store_errors[:3]}"
        returned = {(o[0], o[1]) for o in outcomes if o[2] is None}
        failed = {(o[0], o[1]) for o in outcomes if o[2] is not None}
        present: set[tuple[str, str]] = set()
        sessions: dict[str, list[str]] = defaultdict(list)
        for session, _name, *_ in outcomes:
            sessions[session]  # noqa: B018 - every session the app servers wrote to
        for session in sessions:
            items = memory.store.get_messages(session)
            turns = [turn_of(item) for item in items]
            order = turns[::4]
            assert turns == [t for t in order for _ in range(4)], f"a half turn in {session}"
            assert len(set(order)) == len(order), f"a turn stored twice in {session}"
            present.update((session, name) for name in order)
        lost = returned - present
        assert not lost, f"{len(lost)} runs returned but are not stored: {sorted(lost)[:5]}"
        assert present <= returned | failed, "turns stored that no run was running"
        for number, report in enumerate(reports):
            after = [o[5] for o in report if o[2] is None and o[4] >= up]
            assert after, f"app server {number} ran no turn after the restart"
            assert min(after) - up <= RECOVERY_BOUND
        recovery = max(
            min(o[5] for o in report if o[2] is None and o[4] >= up) for report in reports
        )
    finally:
        memory.close()
    errors = sorted({o[2].split(":")[0] for o in outcomes if o[2] is not None})
    example = next((o[2] for o in outcomes if o[2] is not None), "")
    _workers.figure(
        f"{label}: {servers} app servers x {writers} threads, {len(returned)} runs returned, "
        f"{len(failed)} failed ({', '.join(errors) or 'none'}), server down for "
        f"{up - down:.2f} s, every app server ran turns again {recovery - up:.2f} s after "
        f"it answered, 0 lost, 0 half turns; e.g. {example[:160]!r}"
    )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load_loses_no_returned_run(
    postgres: _private_servers.PrivatePostgres, mode: str, scale: Scale, spawn: Callable[..., Any]
) -> None:
    namespace = f"restart_{mode}"
    _restart_under_load(
        "postgres",
        postgres.dsn,
        namespace,
        lambda: postgres.restart(mode),
        scale,
        spawn,
        f"PostgreSQL restart -m {mode}",
    )


@pytest.mark.parametrize("mode", ["shutdown", "kill"])
def test_redis_with_aof_restart_under_load_loses_no_returned_run(
    redis_server: _private_servers.PrivateRedis,
    mode: str,
    scale: Scale,
    spawn: Callable[..., Any],
) -> None:
    _restart_under_load(
        "redis",
        redis_server.url,
        f"restart-{mode}",
        lambda: redis_server.restart(mode),
        scale,
        spawn,
        f"Redis (appendonly yes, appendfsync always) {mode}",
    )
