"""Fixtures of the reliability tests: the size switch, child processes, figures.

``AGENTSESSION_FULL_SIZE=1`` runs every test here at full size (the figures in
``docs/RELIABILITY.md``); the default is the scaled-down size CI runs.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

from . import _workers
from ._workers import Scale


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale(full=_workers.FULL_SIZE, seed=_workers.SEED)


@pytest.fixture(scope="session")
def mp() -> BaseContext:
    """A forkserver context whose server has imported agentsession and the workers.

    Children are forks of that single-threaded server: cheap to start, and free of the
    test process's threads and state.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["agentsession", _workers.__name__])
    return context


@pytest.fixture
def spawn(mp: BaseContext) -> Iterator[Callable[..., tuple[BaseProcess, Any]]]:
    """``spawn(target, *args)`` starts a worker; any still running at the end is killed."""
    started: list[BaseProcess] = []

    def run(target: Callable[..., None], *args: Any) -> tuple[BaseProcess, Any]:
        proc, conn = _workers.start(mp, target, *args)
        started.append(proc)
        return proc, conn

    yield run
    for proc in started:
        if proc.is_alive():
            proc.kill()
        proc.join(10)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _workers.FIGURES:
        size = "full size" if _workers.FULL_SIZE else "CI size"
        terminalreporter.section(f"reliability figures ({size}, seed {_workers.SEED})")
        for line in _workers.FIGURES:
            terminalreporter.write_line(line)
