"""Async twins of the store's usage ledger methods, mixed into ``StoreMemory``.

Each runs the blocking store method of the same name in a worker thread (see
``StoreMemory._call``), with the same parameters, result and exceptions; ``StoreBase``'s
docstrings say what each promises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .protocol import RunRecord, SessionUsage

if TYPE_CHECKING:
    from .protocol import Store

__all__ = ("LedgerMemoryMixin",)

T = TypeVar("T")


class LedgerMemoryMixin:
    """What each session's runs cost (``usage``, ``runs``, ``usage_by_session``), awaited."""

    if TYPE_CHECKING:
        store: Store

        async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
            raise NotImplementedError

    async def usage(self, session_id: str) -> SessionUsage:
        """The sums of the session's run records (``store.usage``).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        return await self._call(self.store.usage, session_id)

    async def runs(self, session_id: str, limit: int = 20) -> list[RunRecord]:
        """The session's newest ``limit`` run records, newest first (``store.runs``).

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``limit`` not an int >= 1.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        return await self._call(self.store.runs, session_id, limit)

    async def usage_by_session(self, *, limit: int | None = None) -> list[tuple[str, SessionUsage]]:
        """``(session_id, usage)``, most total tokens first (``store.usage_by_session``).

        Raises:
            TypeError, ValueError: ``limit`` not ``None`` or an int >= 1.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        return await self._call(self.store.usage_by_session, limit=limit)
