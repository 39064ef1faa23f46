"""Async twins of the stores' history management, mixed into ``StoreMemory``.

Each method runs the blocking store method of the same name in a worker thread (see
``StoreMemory._call``), with the same arguments, results and exceptions; see
``SQLiteHistoryMixin`` for what each promises. A store without history management
raises ``TypeError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from .protocol import SearchHit, SessionInfo, SessionPage

if TYPE_CHECKING:
    from .protocol import Store

__all__ = ("HistoryMemoryMixin", "HistoryStore")

T = TypeVar("T")


@runtime_checkable
class HistoryStore(Protocol):
    """A blocking store with history management (``SQLiteStore`` is one)."""

    def list_sessions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionPage: ...

    def session_info(self, session_id: str) -> SessionInfo | None: ...

    def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None: ...

    def update_metadata(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        remove: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]: ...

    def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        limit: int = 20,
        raw: bool = False,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]: ...

    def fork(self, session_id: str, new_session_id: str, *, at: int | None = None) -> int: ...

    def prune(
        self,
        *,
        older_than: datetime | timedelta | None = None,
        keep_last: int | None = None,
        batch: int = 500,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> int: ...

    def expire_idle(self, ttl: timedelta, batch: int = 500) -> int: ...

    def vacuum(self) -> None: ...

    def export_jsonl(
        self,
        fp: IO[str],
        *,
        session_ids: Iterable[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int: ...

    def import_jsonl(
        self,
        lines: Iterable[str],
        *,
        on_conflict: Literal["error", "skip", "replace"] = "error",
        progress: Callable[[int], None] | None = None,
    ) -> int: ...


class HistoryMemoryMixin:
    """``search``, ``session_info``, metadata, ``fork``, ``prune``, export and import."""

    if TYPE_CHECKING:
        store: Store

        async def _call(self, func: Callable[..., T], *args: Any) -> T:
            raise NotImplementedError

    def _history(self) -> HistoryStore:
        store = self.store
        if not isinstance(store, HistoryStore):
            raise TypeError(f"{store!r} has no history management (search, export, prune...)")
        return store

    async def list_sessions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionPage:
        """One page of sessions, newest activity first (``store.list_sessions_page``)."""
        store = self._history()
        return await self._call(
            lambda: store.list_sessions_page(limit=limit, cursor=cursor, metadata=metadata)
        )

    async def session_info(self, session_id: str) -> SessionInfo | None:
        """The session's record, or ``None`` (``store.session_info``)."""
        return await self._call(self._history().session_info, session_id)

    async def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace the session's metadata (``store.set_metadata``)."""
        await self._call(self._history().set_metadata, session_id, metadata)

    async def update_metadata(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        remove: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Merge ``changes`` into the session's metadata (``store.update_metadata``)."""
        store = self._history()
        return await self._call(lambda: store.update_metadata(session_id, changes, remove=remove))

    async def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        limit: int = 20,
        raw: bool = False,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]:
        """Full-text search, best match first (``store.search``)."""
        store = self._history()
        return await self._call(
            lambda: store.search(
                query, session_id=session_id, limit=limit, raw=raw, highlight=highlight
            )
        )

    async def fork(self, session_id: str, new_session_id: str, *, at: int | None = None) -> int:
        """Copy history up to ``at`` into a new session (``store.fork``)."""
        store = self._history()
        return await self._call(lambda: store.fork(session_id, new_session_id, at=at))

    async def prune(
        self,
        *,
        older_than: datetime | timedelta | None = None,
        keep_last: int | None = None,
        batch: int = 500,
        dry_run: bool = False,
    ) -> int:
        """Delete idle sessions and/or trim long ones, in batches (``store.prune``)."""
        store = self._history()
        return await self._call(
            lambda: store.prune(
                older_than=older_than, keep_last=keep_last, batch=batch, dry_run=dry_run
            )
        )

    async def expire_idle(self, ttl: timedelta, batch: int = 500) -> int:
        """Delete sessions idle for longer than ``ttl`` (``store.expire_idle``)."""
        return await self._call(self._history().expire_idle, ttl, batch)

    async def vacuum(self) -> None:
        """Give freed space back to the file system (``store.vacuum``)."""
        await self._call(self._history().vacuum)

    async def export_jsonl(self, fp: IO[str], *, session_ids: Iterable[str] | None = None) -> int:
        """Write sessions as JSON Lines from a worker thread (``store.export_jsonl``)."""
        store = self._history()
        ids = None if session_ids is None else list(session_ids)
        return await self._call(lambda: store.export_jsonl(fp, session_ids=ids))

    async def import_jsonl(
        self,
        lines: Iterable[str],
        *,
        on_conflict: Literal["error", "skip", "replace"] = "error",
    ) -> int:
        """Read sessions from JSON Lines in a worker thread (``store.import_jsonl``)."""
        store = self._history()
        return await self._call(lambda: store.import_jsonl(lines, on_conflict=on_conflict))
