"""One background event loop per process, where every ``Runner.run_sync`` call runs.

Why not the SDK's way (the calling thread's default loop): that fails inside a running
loop (a Jupyter cell, an async test), and it gives each calling thread a loop of its own,
so the process-wide OpenAI HTTP client ends up used from several loops ("bound to a
different event loop"). Here every synchronous run, from any thread, is a task on one
long-lived loop in a daemon thread; the calling thread blocks until its task ends.

The loop runs under one task that lasts as long as the thread. anyio takes that task as
the loop's root task, so its worker threads (and the store connections they keep) outlive
each run and are reused by the next, instead of ending with every ``run_sync`` call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ("run_blocking",)

T = TypeVar("T")


class _LoopThread:
    """A daemon thread running one asyncio event loop forever."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="agentsession-run-sync", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        # Never completes: the daemon thread, and this loop, live as long as the process.
        await asyncio.get_running_loop().create_future()


_lock = threading.Lock()
_current: _LoopThread | None = None


def _loop_thread() -> _LoopThread:
    global _current
    with _lock:
        # After fork() the child has the object but not the thread: start a new one.
        if _current is None or _current.pid != os.getpid():
            _current = _LoopThread()
        return _current


def _wait(future: concurrent.futures.Future[T]) -> T:
    # Future.result() waits on a lock, which Ctrl-C (SIGINT) interrupts in the main thread.
    return future.result()


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the background loop and return its result.

    Works from any thread, including one whose own event loop is running. The caller's
    context variables are visible to the coroutine. If the waiting thread is
    interrupted (Ctrl-C raises ``KeyboardInterrupt``), the task is cancelled and waited
    for, so the run's own clean-up finishes before the interrupt propagates.

    Raises:
        Whatever the coroutine raises.
    """
    worker = _loop_thread()
    if threading.current_thread() is worker.thread:
        # Called from inside a run on the background loop (a sync tool calling
        # run_sync): blocking that loop on itself would deadlock, so use a private one.
        return _run_in_new_thread(coro)
    context = contextvars.copy_context()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[T]] = []

    def start() -> None:
        if not future.set_running_or_notify_cancel():
            coro.close()
            return
        task = context.run(worker.loop.create_task, coro)
        tasks.append(task)

        def done(task: asyncio.Task[T]) -> None:
            if task.cancelled():
                future.set_exception(concurrent.futures.CancelledError())
            elif task.exception() is not None:
                future.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                future.set_result(task.result())

        task.add_done_callback(done)

    worker.loop.call_soon_threadsafe(start)
    try:
        return _wait(future)
    except BaseException:
        # cancel() succeeds only if start() has not run yet; otherwise the task exists
        # (start() made it in the same loop callback), so cancel it and wait for its end.
        if not future.cancel():
            worker.loop.call_soon_threadsafe(lambda: tasks[0].cancel())
            try:
                concurrent.futures.wait([future])
            except BaseException:
                pass  # a second Ctrl-C stops the waiting, not the clean-up
        raise


def _run_in_new_thread(coro: Coroutine[Any, Any, T]) -> T:
    result: list[T] = []
    error: list[BaseException] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            result.append(context.run(asyncio.run, coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="agentsession-nested-run-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
