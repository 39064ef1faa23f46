"""Worker processes for the multi-process workloads (W4, W9): started once, run jobs.

Each job runs in every process at once: the parent sends each process its job, every
process opens what it needs and answers ``"ready"``, then the parent sends them all one
start time, so their timed parts overlap, and each sends back its report (a dict).
"""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from ._core import timed

__all__ = ("Pool", "serve")


def serve(
    conn: Connection,
    preload: Sequence[str],
    handle: Callable[[Connection, tuple[Any, ...]], dict[str, Any]],
) -> None:
    """A worker process's loop: run ``handle(conn, job)`` for each job until ``None``.

    ``handle`` sends ``"ready"`` when set up and waits for the start time itself; an
    exception it raises is sent to the parent as ``{"crashed": ...}``.
    """
    for module in preload:
        try:  # import everything once, up front, rather than inside the first job
            importlib.import_module(module)
        except ImportError:
            pass
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            result = handle(conn, job)
        except Exception as exc:  # noqa: BLE001 - sent to the parent
            conn.send({"crashed": f"{type(exc).__name__}: {exc}"})
            continue
        conn.send(result)


class Pool:
    """``count`` worker processes running ``target(conn)``, started once.

    A fork server imports ``preload`` once and forks the workers from it, which is much
    faster than fresh interpreters each importing the SDK; spawn where there is none.
    """

    def __init__(
        self, target: Callable[[Connection], None], count: int, preload: Sequence[str]
    ) -> None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([target.__module__, *preload])
        else:
            context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=target, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def run(self, what: str, jobs: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """Run ``jobs[i]`` in process ``i``, all started together; return the reports.

        Raises:
            RuntimeError: a process could not set up or crashed (naming ``what``).
        """
        for pipe, job in zip(self.pipes, jobs, strict=True):
            pipe.send(job)
        replies = [pipe.recv() for pipe in self.pipes]
        started = [
            pipe for pipe, reply in zip(self.pipes, replies, strict=True) if reply == "ready"
        ]
        start_at = timed() + 0.05
        for pipe in started:  # even if one failed, so every process is ready for the next job
            pipe.send(start_at)
        results = [pipe.recv() for pipe in started]
        crashed = [r for r in replies if r != "ready"] + [r for r in results if "crashed" in r]
        if crashed:
            first = crashed[0]
            raise RuntimeError(
                f"worker failed on {what}: {first['crashed'] if isinstance(first, dict) else first}"
            )
        return results

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
