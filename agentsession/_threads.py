"""The worker threads an async memory runs its blocking store calls in.

One pool per memory, shared by every event loop and thread of the process: at most
``max_threads`` threads, started on demand and kept until the memory is closed, so the
store's per-thread connections are opened once and reused by every later call (a run, a
request, an ``asyncio.run``) instead of per call or per loop.

Why not ``anyio.to_thread.run_sync``: measured on this project's 2-core machine, sixteen
tasks each reading and writing a session got 2.5-3.6 thousand read-and-write pairs per
second through it against 5.3-6.7 thousand through a plain executor (and 11-15 thousand
with no thread at all); its per-call machinery (cancel scopes, root-task lookup, a
limiter per loop) was most of what a run with memory cost beyond the SDK's own work. What
it promised is kept here: a call that has started always finishes before its caller
goes on, even when the caller is cancelled, so a write is never left half done and never
outlives ``close()``; a call cancelled before it started never runs; the caller's context
variables are visible to the call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

__all__ = ("WorkerThreads",)

T = TypeVar("T")


class WorkerThreads:
    """A bounded, fork-aware thread pool with cancellation that never abandons a call.

    Thread safety: every method may be called from any thread and event loop.

    Args:
        max_threads: the most threads (and so store calls at once) this pool runs.
        name: the start of its threads' names.
    """

    def __init__(self, max_threads: int, name: str = "agentsession-store") -> None:
        self.max_threads = max_threads
        self.name = name
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = os.getpid()

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        executor = self._executor
        if executor is not None and self._pid == os.getpid():
            return executor
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                # After fork() the child has the parent's executor but none of its
                # threads: it would queue work that never runs. Start afresh.
                self._pid = os.getpid()
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.max_threads, thread_name_prefix=self.name
                )
            return self._executor

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func(*args, **kwargs)`` in a worker thread and return its result.

        Raises:
            Whatever ``func`` raises; ``CancelledError`` if the caller was cancelled (then
            the call either never started or has finished).
        """
        context = contextvars.copy_context()
        call = functools.partial(context.run, func, *args, **kwargs)
        future = self._pool().submit(call)
        waiting = asyncio.wrap_future(future)
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            if future.cancel():  # it had not started: nothing ran
                raise
            # It is running: wait for it to end, however often we are cancelled meanwhile.
            # Inside a shielded anyio scope: an anyio cancel scope (move_on_after, a task
            # group's cancel) re-delivers its cancellation on every turn of the loop to a
            # task that is not shielded from it, which would spin here, holding the GIL
            # the worker thread needs to finish (seconds for a large write).
            while not waiting.done():
                try:
                    with anyio.CancelScope(shield=True):
                        await asyncio.shield(waiting)
                except asyncio.CancelledError:
                    pass  # a plain asyncio cancellation, delivered once
            waiting.exception()  # retrieved, so a failure is not logged as unhandled
            raise

    @property
    def thread_count(self) -> int:
        """How many worker threads exist now."""
        executor = self._executor
        return 0 if executor is None or self._pid != os.getpid() else len(executor._threads)

    def close(self) -> None:
        """Let running calls finish, then end every thread. Later calls start a new pool."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None and self._pid == os.getpid():
            executor.shutdown(wait=True)
