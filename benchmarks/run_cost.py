"""What one run costs, path by path: CPU per ``run_sync`` in one process.

    python -m benchmarks.run_cost                 # 900 runs per path, about a minute
    python -m benchmarks.run_cost --runs 200 --threads 4
    python -m benchmarks.run_cost --tasks         # W9's 16 async tasks, every engine

A probe of its own, outside ``benchmarks.run`` (it writes nothing): the W9 agent (a
scripted model, tracing off) runs on short sessions (30 runs each, as in W9) from
``--threads`` threads, once per path:

- *none, SDK*: the SDK's ``Runner.run_sync`` with no session;
- *none, agentsession*: agentsession's ``Runner.run_sync`` with no memory (its hop to
  the background loop);
- *list, SDK* and *list, agentsession*: a Python list as the session (the limit);
- *memory*: ``RunConfig(memory=SQLiteSessionMemory(file), session_id=...)``.

Per path it prints runs/s and the process's user and system CPU per run (``getrusage``,
every thread). The difference between *list, agentsession* and *memory* is what the
memory itself costs a run; between the two *none* rows, the hop.

With ``--tasks`` it measures W9's other shape instead: ``TASKS`` async tasks on one event
loop calling ``Runner.run``, each on its own sessions, for W9's systems: no session, the
list session, the SDK's ``SQLiteSession`` and ``SQLiteSessionMemory``, and on the
PostgreSQL and Redis servers of ``--pg`` and ``--redis`` (skipped, with a line saying so,
when nothing answers there) the SDK's ``SQLAlchemySession`` and ``RedisSession`` and
agentsession's memories. One process runs an event loop on one core, so runs/s there is
close to 1 / (CPU per run): a system whose CPU per run is above the list session's cannot
make more runs/s than it, whatever its server does. The servers' own CPU is not counted.
Everything written on a server is under a key prefix or schema of its own, removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ._systems_servers import DEFAULT_POSTGRES, DEFAULT_REDIS, reachable, redact, sweep
from .w9_runner import ADAPTERS, SERVERS, SQLITE, TASKS, ListSession, make_agent, question

PER_SESSION = 30  # runs per session, as in W9
#: The server a W9 system key's prefix names (``pg-memory``: PostgreSQL).
ENGINE_OF = {"pg": "postgres", "redis": "redis"}


def _paths(folder: Path) -> dict[str, Any]:
    """Each path's ``run(agent, text, session_id)``."""
    import agents

    import agentsession

    memory = agentsession.SQLiteSessionMemory(folder / "run-cost.db")
    lists: dict[str, ListSession] = {}
    guard = threading.Lock()

    def listed(session_id: str) -> ListSession:
        with guard:
            return lists.setdefault(session_id, ListSession(session_id))

    return {
        "none, SDK": lambda a, t, s: agents.Runner.run_sync(a, t),
        "none, agentsession": lambda a, t, s: agentsession.Runner.run_sync(a, t),
        "list, SDK": lambda a, t, s: agents.Runner.run_sync(a, t, session=listed(s)),
        "list, agentsession": lambda a, t, s: agentsession.Runner.run_sync(a, t, session=listed(s)),
        "memory": lambda a, t, s: agentsession.Runner.run_sync(
            a, t, run_config=agentsession.RunConfig(memory=memory, session_id=s)
        ),
    }


def _measure(run: Any, name: str, runs: int, threads: int) -> str:
    def body(worker: int, count: int, tag: str) -> None:
        agent = make_agent(count)
        for index in range(count):
            session_id = f"{tag}-{worker}-{index // PER_SESSION}"
            run(agent, question(worker, index % PER_SESSION), session_id)
        asyncio.set_event_loop(None)  # the SDK's run_sync may have left one here

    def in_threads(count: int, tag: str) -> None:
        workers = [threading.Thread(target=body, args=(w, count, tag)) for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    in_threads(5, f"{name}-warm")
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    in_threads(runs, name)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return _row(name, runs * threads, wall, before, after)


def _row(name: str, total: int, wall: float, before: Any, after: Any) -> str:
    user = (after.ru_utime - before.ru_utime) / total * 1e3
    system = (after.ru_stime - before.ru_stime) / total * 1e3
    return f"{name:20} {total / wall:8.0f} {user:10.3f} {system:10.3f} {user + system:10.3f}"


async def _measure_tasks(adapter: Any, name: str, runs: int) -> str:
    """``TASKS`` tasks making ``runs`` runs each through ``adapter`` (a W9 ``Runs``)."""
    await adapter.open()
    try:

        async def worker(index: int, count: int, tag: str) -> None:
            agent = make_agent(count)
            for run_index in range(count):
                session_id = f"{tag}-{index}-{run_index // PER_SESSION}"
                await adapter.run(agent, question(index, run_index % PER_SESSION), session_id)

        await asyncio.gather(*(worker(i, 3, "warm") for i in range(TASKS)))
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await asyncio.gather(*(worker(i, runs, "cost") for i in range(TASKS)))
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await adapter.aclose()
    return _row(name, runs * TASKS, wall, before, after)


async def _tasks(folder: Path, runs: int, servers: dict[str, str]) -> None:
    """Print a row per W9 system in the 16-task shape (see the module docstring)."""
    base = f"agentsession_cost_{uuid.uuid4().hex[:10]}"
    print(f"(servers' schemas and keys under {base}_*, removed at the end)", flush=True)
    reached: dict[str, str] = {}
    for engine, url in servers.items():
        reason = reachable(engine, url)
        if reason is None:
            reached[engine] = url
        else:
            print(f"skipping the {engine} systems: {reason}", flush=True)
    try:
        for key in (*SQLITE, *SERVERS):
            engine = None if key in SQLITE else ENGINE_OF[key.split("-")[0]]
            if engine is not None and engine not in reached:
                continue
            where = reached[engine] if engine else str(folder / f"{key}.db")
            adapter = ADAPTERS[key](where, "FULL", f"{base}_{key.replace('-', '_')}")
            print(await _measure_tasks(adapter, key, runs), flush=True)
    finally:
        if reached:
            sweep(reached, base, set(reached))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=900, help="runs per thread (task) and path")
    parser.add_argument("--threads", type=int, default=1, help="threads running at once")
    parser.add_argument(
        "--tasks", action="store_true", help=f"W9's {TASKS} async tasks, every engine"
    )
    parser.add_argument("--pg", default=DEFAULT_POSTGRES, help="PostgreSQL URL for --tasks")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL for --tasks")
    args = parser.parse_args()
    import agents

    agents.set_tracing_disabled(True)
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'path':20} {'runs/s':>8} {'user ms':>10} {'system ms':>10} {'CPU ms':>10}")
        if args.tasks:
            servers = {"postgres": args.pg, "redis": args.redis}
            print(f"({TASKS} tasks; servers: {redact(args.pg)}, {redact(args.redis)})")
            asyncio.run(_tasks(Path(folder), args.runs, servers))
            return
        for name, run in _paths(Path(folder)).items():
            print(_measure(run, name, args.runs, args.threads), flush=True)


if __name__ == "__main__":
    main()
