"""Whole turns for streamed runs.

``Runner.run_streamed`` returns before the run has read any history, and the SDK tells
only the consumer of ``stream_events()`` whether the run failed. So the run's
``RunGuard`` is entered by the session itself, on the run's first session call, and left
by ``stream_events()``: a stream that ends normally keeps the turn, one that raises rolls
it back. If nobody consumes the stream, the session is released when the run's task
ends, so a lease is never held longer than its run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from ._run_guard import RunGuard

if TYPE_CHECKING:
    from agents.memory import Session

    # stream_events (replaced below) and run_loop_task: see _sdk.py.
    from ._sdk import RunResultStreaming

__all__ = ("GuardedSession", "guard_stream")


class GuardedSession:
    """A session that enters ``guard`` before the run's first read or write of it."""

    def __init__(self, inner: Session, guard: RunGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.session_id = inner.session_id
        self.session_settings = inner.session_settings
        self._entered: asyncio.Future[None] | None = None

    async def _enter(self) -> None:
        if self._entered is None:
            self._entered = asyncio.get_running_loop().create_future()
            try:
                await self.guard.__aenter__()
            except BaseException as exc:
                self._entered.set_exception(exc)
                raise
            self._entered.set_result(None)
        else:
            await asyncio.shield(self._entered)

    async def get_items(self, limit: int | None = None) -> list[Any]:
        await self._enter()
        return await self.inner.get_items(limit)

    async def add_items(self, items: list[Any]) -> None:
        await self._enter()
        await self.inner.add_items(items)

    async def pop_item(self) -> Any:
        await self._enter()
        return await self.inner.pop_item()

    async def clear_session(self) -> None:
        await self._enter()
        await self.inner.clear_session()


def guard_stream(result: RunResultStreaming, guard: RunGuard) -> None:
    """Make ``result.stream_events()`` leave ``guard``: keep the turn or roll it back."""
    events = result.stream_events
    state = {"consuming": False, "done": False}

    async def finish(failed: type[BaseException] | None) -> None:
        if state["done"]:
            return
        state["done"] = True
        if guard.ledger is not None:
            guard.ledger.ended(result)  # the agent running when the stream ended
        await guard.__aexit__(failed, None, None)

    def failure(task: asyncio.Task[Any] | None) -> type[BaseException] | None:
        # How the run's task ended: the guard records a cancelled run as such.
        if task is None:
            return None
        if task.cancelled():
            return asyncio.CancelledError
        exc = task.exception()
        return None if exc is None else type(exc)

    async def stream_events() -> AsyncIterator[Any]:
        state["consuming"] = True
        failed: type[BaseException] | None = RuntimeError
        try:
            async for event in events():
                yield event
            failed = failure(result.run_loop_task)
        except GeneratorExit:
            # The consumer stopped early; the run goes on, and its end releases the guard.
            state["consuming"] = False
            raise
        except BaseException as exc:
            failed = type(exc)
            raise
        finally:
            if state["consuming"]:
                with anyio.CancelScope(shield=True):
                    await finish(failed)

    def run_ended(task: asyncio.Task[Any]) -> None:
        if not state["consuming"] and not state["done"]:
            asyncio.get_running_loop().create_task(finish(failure(task)))

    result.stream_events = stream_events  # type: ignore[method-assign]
    if result.run_loop_task is not None:
        result.run_loop_task.add_done_callback(run_ended)
