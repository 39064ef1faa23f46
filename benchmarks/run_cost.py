"""What one run costs, path by path: CPU per ``run_sync`` in one process.

    python -m benchmarks.run_cost                 # 900 runs per path, about a minute
    python -m benchmarks.run_cost --runs 200 --threads 4

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
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .w9_runner import ListSession, make_agent, question

PER_SESSION = 30  # runs per session, as in W9


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
    total = runs * threads
    user = (after.ru_utime - before.ru_utime) / total * 1e3
    system = (after.ru_stime - before.ru_stime) / total * 1e3
    return f"{name:20} {total / wall:8.0f} {user:10.3f} {system:10.3f} {user + system:10.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=900, help="runs per thread and path")
    parser.add_argument("--threads", type=int, default=1, help="threads running at once")
    args = parser.parse_args()
    import agents

    agents.set_tracing_disabled(True)
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'path':20} {'runs/s':>8} {'user ms':>10} {'system ms':>10} {'CPU ms':>10}")
        for name, run in _paths(Path(folder)).items():
            print(_measure(run, name, args.runs, args.threads), flush=True)


if __name__ == "__main__":
    main()
