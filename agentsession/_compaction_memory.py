"""Compaction, awaited: ``compact`` (the summary model call between the store's two
steps, all under the session's lease) and the async twins of the store's compaction
methods, mixed into ``StoreMemory``. See ``docs/compaction.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._summarize import summarize, summary_agent
from ._validate import check_session_id
from .exceptions import SessionBusy
from .protocol import CompactionRecord

if TYPE_CHECKING:
    from .protocol import Store

__all__ = ("CompactionMemoryMixin", "compact_holding")

T = TypeVar("T")

#: Seconds a compaction's lease lasts on engines whose leases expire; renewed every third.
_LEASE = 5.0


def _check_keep_turns(keep_turns: Any) -> int:
    if isinstance(keep_turns, bool) or not isinstance(keep_turns, int):
        raise TypeError(f"keep_turns must be an int, got {keep_turns!r}")
    if keep_turns < 1:
        raise ValueError(f"keep_turns must be at least 1, got {keep_turns}")
    return keep_turns


async def compact_holding(
    call: Callable[..., Any],
    store: Store,
    session_id: str,
    owner: str,
    *,
    model: Any,
    keep_turns: int,
    instructions: str | None,
    tracing_disabled: bool = False,
) -> CompactionRecord | None:
    """Compact the session whose run lease ``owner`` holds; ``None``: nothing to compact.

    ``call`` runs a blocking store method off the event loop (``StoreMemory._call``).
    The summary model's run record is stored before the compaction, whatever happens.
    """
    agent = summary_agent(model, instructions)
    items = await call(store.compaction_candidates, session_id, keep_turns)
    if not items:
        return None
    summary, record, error = await summarize(agent, items, session_id, tracing_disabled)
    await call(store.add_messages, session_id, [], run=record)
    if error is not None:
        raise error
    assert summary is not None
    done: CompactionRecord = await call(
        store.compact_with,
        session_id,
        summary,
        items=len(items),
        model=record.model,
        lease_owner=owner,
    )
    return done


class CompactionMemoryMixin:
    """``compact`` and the async twins of the store's compaction methods."""

    if TYPE_CHECKING:
        store: Store

        async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
            raise NotImplementedError

    @contextlib.asynccontextmanager
    async def _held(self, session_id: str) -> AsyncIterator[str]:
        """Hold the session's run lease (waiting as ``store._edit`` does, up to the
        store's ``lock_timeout``), renewed while the body runs; yield the owner."""
        owner = f"{socket.gethostname()}:{os.getpid()}:compact:{uuid.uuid4().hex}"
        deadline = time.monotonic() + float(getattr(self.store, "lock_timeout", 30.0))
        pause = 0.005
        while not await self._call(self.store.try_lock, session_id, owner, _LEASE):
            if time.monotonic() >= deadline:
                raise SessionBusy(f"session {session_id!r} is in use by a run")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

        async def renew() -> None:
            while True:
                await asyncio.sleep(_LEASE / 3)
                with contextlib.suppress(Exception):
                    await self._call(self.store.try_lock, session_id, owner, _LEASE)

        # Only a lease that lapses needs renewing (as a run's: see _run_guard).
        expires = bool(getattr(self.store, "lease_expires", True))
        renewal = asyncio.ensure_future(renew()) if expires else None
        try:
            yield owner
        finally:
            if renewal is not None:
                renewal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewal
            await asyncio.shield(self._call(self.store.unlock, session_id, owner))

    async def compact(
        self,
        session_id: str,
        *,
        model: Any,
        keep_turns: int = 2,
        instructions: str | None = None,
    ) -> CompactionRecord:
        """Summarise every turn of the session before its newest ``keep_turns`` with
        ``model`` and archive them: afterwards the session reads as one summary item
        followed by the kept turns. Nothing is lost: ``uncompact`` undoes it exactly.

        Holds the session's run lease throughout (waiting for a run that holds it, up to
        ``store.lock_timeout`` seconds), so no run reads or adds in between. The summary
        model's call is recorded in the session's usage ledger as a run of its own
        (agent ``"agentsession compaction"``, ``items_added`` 0), even if it fails.

        Args:
            session_id: the session.
            model: writes the summary: an SDK ``Model``, a model name for the SDK's default
                provider, or an ``Agent`` (its instructions replaced by ``instructions``
                when given).
            keep_turns: how many of the newest turns to keep as they are (1 or more).
            instructions: the summary model's instructions (``None``:
                ``compaction.DEFAULT_INSTRUCTIONS``).

        Returns:
            The compaction's record.

        Raises:
            TypeError, ValueError: a bad argument; ``ValueError`` also when the session
                holds no more than ``keep_turns`` turns (nothing to compact).
            SessionBusy: a run held the session for longer than ``lock_timeout``.
            StoreBusy, StoreClosed, StoreError: the backend failed; nothing is changed.
            Whatever the summary model raised: nothing is changed.
        """
        check_session_id(session_id)
        _check_keep_turns(keep_turns)
        summary_agent(model, instructions)  # bad arguments fail before the lease
        async with self._held(session_id) as owner:
            record = await compact_holding(
                self._call,
                self.store,
                session_id,
                owner,
                model=model,
                keep_turns=keep_turns,
                instructions=instructions,
            )
        if record is None:
            raise ValueError(
                f"session {session_id!r} has nothing to compact: it holds {keep_turns} "
                f"turn{'s' if keep_turns != 1 else ''} or fewer (keep_turns={keep_turns})"
            )
        return record

    async def compaction_candidates(
        self, session_id: str, keep_turns: int = 2
    ) -> list[dict[str, Any]]:
        """The messages a compaction would archive (``store.compaction_candidates``)."""
        return await self._call(self.store.compaction_candidates, session_id, keep_turns)

    async def compact_with(
        self,
        session_id: str,
        summary: str,
        *,
        items: int,
        model: str = "",
        lease_owner: str | None = None,
    ) -> CompactionRecord:
        """Archive the oldest ``items`` messages behind ``summary``
        (``store.compact_with``)."""
        return await self._call(
            self.store.compact_with,
            session_id,
            summary,
            items=items,
            model=model,
            lease_owner=lease_owner,
        )

    async def uncompact(self, session_id: str) -> CompactionRecord | None:
        """Undo the newest compaction exactly (``store.uncompact``)."""
        return await self._call(self.store.uncompact, session_id)

    async def compactions(self, session_id: str) -> list[CompactionRecord]:
        """The session's compactions in force, oldest first (``store.compactions``)."""
        return await self._call(self.store.compactions, session_id)
