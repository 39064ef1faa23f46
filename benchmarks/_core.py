"""What every workload shares: the run's context, its results and targets, and drivers.

Sync systems are driven from threads, async ones from tasks on one event loop; either
way a workload is written once against ``Driver``, whose ``get`` and ``add`` are
coroutines (a sync handle's call simply runs inline, on the calling thread).
"""

from __future__ import annotations

import asyncio
import gc
import math
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._report import Table, ratio_summary
from ._systems import System

__all__ = (
    "Context",
    "Driver",
    "Gate",
    "Result",
    "Scale",
    "Target",
    "fill",
    "attempt",
    "close_all",
    "in_threads",
    "open_all",
    "open_driver",
    "rotate",
    "run_workers",
    "settle",
    "unsettle",
    "timed",
)


@dataclass(frozen=True)
class Scale:
    """Sizes for one mode (``full``, ``quick`` or ``smoke``)."""

    rounds: int
    w1_turns: int
    w2_items: int
    w2_window_reads: int
    w2_full_reads: int
    w3_turns: int
    w3b_history: int
    w3b_reads: int
    w4_adds: int
    w5_messages: int
    w5_sessions: int
    w5_reads: int
    w5_lists: int
    w6_sessions: tuple[int, ...]
    w7_runs: int
    w8_turns: int
    w8_items: int
    w8_reads: int
    w8_full_reads: int
    w8_worker_turns: int


SCALES = {
    "full": Scale(3, 500, 10_000, 2000, 40, 200, 1000, 400, 200,
                  1_000_000, 10_000, 2000, 50, (10, 100), 7,
                  300, 10_000, 1500, 30, 100),
    # Each workload once, every system, in about 30 s on a loaded 2-core machine.
    "quick": Scale(1, 30, 2_000, 100, 2, 10, 200, 30, 20,
                   20_000, 200, 100, 5, (3, 10), 1,
                   20, 300, 100, 2, 8),
    "smoke": Scale(1, 8, 200, 10, 1, 3, 60, 5, 3,
                   2_000, 20, 10, 2, (2, 4), 1,
                   5, 100, 5, 1, 3),
}  # fmt: skip


@dataclass
class Context:
    """Everything a workload needs: mode, sizes, systems, durability, a temp root, and
    the servers W8 runs on."""

    mode: str
    scale: Scale
    systems: list[System]
    synchronous: str
    root: Path
    log: Callable[[str], None] = print
    servers: dict[str, str] = field(default_factory=dict)  # W8: engine -> URL

    def fresh_dir(self, name: str) -> Path:
        """A new empty directory for one workload (removed with the run's temp root)."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        return path

    def drop_dir(self, path: Path) -> None:
        """Remove a workload's directory (large databases must not pile up)."""
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Target:
    """One target of the issue, checked as a ratio measured once per round.

    ``ratios`` are oriented so that the check is ``median(ratios) op threshold``.
    """

    workload: str
    goal: str
    system: str
    ratios: list[float]
    op: str  # ">=" or "<="
    threshold: float
    why: str = ""
    close: str = ""
    unit: str = "x"  # "x" for a ratio, "" for a count (errors, lost items)

    @property
    def median(self) -> float:
        return ratio_summary(self.ratios)[0]

    @property
    def passed(self) -> bool | None:
        median = self.median
        if math.isnan(median):
            return None
        return median >= self.threshold if self.op == ">=" else median <= self.threshold

    def shortfall(self) -> str:
        """How far a missed target is from its threshold, in words."""
        median = self.median
        if self.passed is not False:
            return ""
        if self.unit != "x":
            return f"{median:g} against at most {self.threshold:g}"
        if self.op == ">=":
            short = self.threshold / median if median > 0 else float("inf")
            return f"{median:.2f}x against at least {self.threshold:g}x ({short:.1f}x short)"
        over = median / self.threshold
        return f"{median:.2f}x against at most {self.threshold:g}x ({over:.1f}x over)"


@dataclass
class Result:
    """What a workload hands the report."""

    key: str
    title: str
    summary: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    charts: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def timed() -> float:
    """The benchmark clock (``time.perf_counter``), in seconds."""
    return time.perf_counter()


class Driver:
    """A handle of any system, with async ``get``/``add`` for workload code.

    For a sync system the calls run on the calling thread (inside a task they block the
    loop, which is what a sync API does); ``in_thread`` says whether a workload should
    give each worker its own thread.
    """

    def __init__(self, system: System, handle: Any) -> None:
        self.system = system
        self.handle = handle
        self.in_thread = not system.is_async

    async def get(self, session_id: str, limit: int | None) -> list[Any]:
        if self.system.is_async:
            return await self.handle.get(session_id, limit)  # type: ignore[no-any-return]
        return self.handle.get(session_id, limit)  # type: ignore[no-any-return]

    async def add(self, session_id: str, items: list[Any]) -> None:
        if self.system.is_async:
            await self.handle.add(session_id, items)
        else:
            self.handle.add(session_id, items)

    async def list_recent(self, count: int) -> list[str] | None:
        method = getattr(self.handle, "list_recent", None)
        if method is None:
            return None
        if self.system.is_async:
            return await method(count)  # type: ignore[no-any-return]
        return method(count)  # type: ignore[no-any-return]

    def connections(self) -> int | None:
        method = getattr(self.handle, "connections", None)
        return None if method is None else int(method())

    async def close(self) -> None:
        if self.system.is_async:
            await self.handle.aclose()
        else:
            self.handle.close()


def open_driver(system: System, directory: Path, synchronous: str) -> Driver:
    """Open ``system`` in ``directory`` (call inside the loop that will use it)."""
    directory.mkdir(parents=True, exist_ok=True)
    return Driver(system, system.open(directory, synchronous))


async def fill(driver: Driver, session_id: str, count: int, batch: int = 100) -> None:
    """Add ``count`` realistic items to a session in batches (set-up, not measured)."""
    from ._items import turn_items

    turn = 0
    added = 0
    while added < count:
        items: list[Any] = []
        while len(items) < min(batch, count - added):
            items.extend(turn_items(turn))
            turn += 1
        items = items[: count - added]
        await driver.add(session_id, items)
        added += len(items)


async def attempt(
    ctx: Context, label: str, notes: list[str], step: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    """Await ``step(*args)``; if it fails, log it, note it and return ``None``.

    One system failing (a missing driver, a locked file) costs that system its row, not
    the whole run.
    """
    start = time.perf_counter()
    try:
        outcome = await step(*args)
        ctx.log(f"  {label}: {time.perf_counter() - start:.1f} s")
        return outcome
    except Exception as exc:  # noqa: BLE001 - reported in RESULTS.md, not hidden
        message = f"{label} failed: {type(exc).__name__}: {exc}"
        ctx.log("  ! " + message)
        ctx.log(traceback.format_exc(limit=4))
        notes.append(message)
        return None


async def open_all(
    ctx: Context,
    directory: Path,
    notes: list[str],
    prepare: Callable[[Driver], Awaitable[Any]] | None = None,
    systems: list[System] | None = None,
    opener: Callable[[System], Driver] | None = None,
) -> dict[str, Driver]:
    """Open every system (each in its own sub-directory, or with ``opener``) and
    ``prepare`` it (warm-up, fill); a system that fails either step is left out, with a
    note."""
    drivers: dict[str, Driver] = {}

    async def one(system: System) -> bool:
        if opener is not None:
            driver = opener(system)
        else:
            driver = open_driver(system, directory / system.key, ctx.synchronous)
        drivers[system.key] = driver
        if prepare is not None:
            await prepare(driver)
        return True

    for system in ctx.systems if systems is None else systems:
        if await attempt(ctx, f"{system.label} set-up", notes, one, system) is None:
            failed = drivers.pop(system.key, None)
            if failed is not None:
                await attempt(ctx, f"{system.label} close", notes, failed.close)
    return drivers


async def close_all(drivers: dict[str, Driver]) -> None:
    """Close every driver."""
    for driver in drivers.values():
        await driver.close()


def rotate(systems: list[System], round_index: int) -> list[System]:
    """The systems in a different order each round, so no system always goes first."""
    if not systems:
        return systems
    shift = round_index % len(systems)
    return systems[shift:] + systems[:shift]


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on ``count`` fresh threads at once; return their results in order."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            results[index] = work(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


class Gate:
    """A one-shot start line for ``count`` workers, threads or tasks alike."""

    def __init__(self, count: int, threads: bool) -> None:
        self._barrier = threading.Barrier(count) if threads else None
        self._count = count
        self._arrived = 0
        self._event: asyncio.Event | None = None if threads else asyncio.Event()

    async def wait(self) -> None:
        if self._barrier is not None:
            self._barrier.wait()
            return
        assert self._event is not None
        self._arrived += 1
        if self._arrived >= self._count:
            self._event.set()
        await self._event.wait()


Worker = Callable[[int, Gate], Awaitable[Any]]


async def run_workers(driver: Driver, count: int, worker: Worker) -> list[Any]:
    """Run ``worker(i, gate)`` for ``i < count``: threads for a sync system (each with its
    own event loop, so the same async worker code serves both), tasks for an async one.

    For a sync system this call blocks the caller's loop until the threads finish, which
    is harmless: nothing else runs meanwhile.
    """
    if driver.in_thread:
        gate = Gate(count, threads=True)
        return in_threads(count, lambda i: asyncio.run(worker(i, gate)))  # type: ignore[arg-type]
    gate = Gate(count, threads=False)
    return list(await asyncio.gather(*(worker(i, gate) for i in range(count))))


def settle() -> None:
    """Collect garbage, then freeze what survives (imports, open handles) out of the GC.

    With the SDK imported the heap holds hundreds of thousands of objects, and a full
    collection that happens to fall inside a measured call costs 100+ ms: noise that
    lands on whichever system triggers it, not a property of that system. Freezing keeps
    the collector running (every system allocates alike) but makes its pauses short.
    """
    gc.collect()
    gc.freeze()


def unsettle() -> None:
    """Undo ``settle`` at the end of a workload, so its objects can be collected."""
    gc.unfreeze()
    gc.collect()
