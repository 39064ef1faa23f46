"""Async twins of the store's history methods, mixed into ``StoreMemory``.

Each method runs the blocking store method of the same name in a worker thread (see
``StoreMemory._call``), with the same parameters, defaults, result and exceptions; the
store's docstring (``SQLiteStore``, ``PostgresStore``, ``RedisStore``) says what each
promises. A ``progress`` callback is called from that worker thread.
``tests/test_memory_parity.py`` fails if a store method has no twin here or in
``StoreMemory``, or if a twin's parameters differ from the store's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from .protocol import SearchHit, SessionInfo, SessionPage

if TYPE_CHECKING:
    from .protocol import Store

__all__ = ("HistoryMemoryMixin",)

T = TypeVar("T")

#: Called with how many messages (``prune``) or sessions (JSONL) were just done.
Progress = Callable[[int], None]


class HistoryMemoryMixin:
    """Turns (``rewind``, ``truncate``, ``message_count``), sessions and metadata,
    ``search``, ``fork``, retention, and JSON Lines export and import, awaited."""

    if TYPE_CHECKING:
        store: Store

        async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
            raise NotImplementedError

    # -- turns -----------------------------------------------------------------------------

    async def rewind(self, session_id: str, turns: int = 1) -> list[dict[str, Any]]:
        """Remove the session's last ``turns`` turns whole; return what was removed.

        A turn starts at a user message. One transaction (``store.rewind``).

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``turns`` not an int >= 1.
            StoreBusy, StoreClosed, StoreError: the backend failed; nothing is removed.
        """
        return await self._call(self.store.rewind, session_id, turns)

    async def truncate(self, session_id: str, keep: int) -> list[dict[str, Any]]:
        """Keep the oldest ``keep`` messages; remove and return the rest (``store.truncate``).

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``keep`` not an int >= 0.
            StoreBusy, StoreClosed, StoreError: the backend failed; nothing is removed.
        """
        return await self._call(self.store.truncate, session_id, keep)

    async def message_count(self, session_id: str) -> int:
        """How many messages the session holds, 0 if unknown (``store.message_count``).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreClosed, StoreError: the backend failed.
        """
        return await self._call(self.store.message_count, session_id)

    # -- sessions and metadata -------------------------------------------------------------

    async def list_sessions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionPage:
        """One page of sessions, newest activity first (``store.list_sessions_page``).

        Raises:
            TypeError, ValueError: a bad ``limit``, ``cursor`` or ``metadata`` filter.
            StoreClosed, StoreError: the backend failed.
        """
        return await self._call(
            self.store.list_sessions_page, limit=limit, cursor=cursor, metadata=metadata
        )

    async def session_info(self, session_id: str) -> SessionInfo | None:
        """The session's record, or ``None`` if unknown (``store.session_info``).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreClosed, StoreError: the backend failed.
        """
        return await self._call(self.store.session_info, session_id)

    async def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace the session's metadata (``store.set_metadata``).

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``metadata``; nothing changes.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        await self._call(self.store.set_metadata, session_id, metadata)

    async def update_metadata(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        remove: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Merge ``changes`` into the metadata, drop ``remove``; return the result
        (``store.update_metadata``).

        Raises:
            TypeError, ValueError: a bad argument; nothing changes.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        return await self._call(self.store.update_metadata, session_id, changes, remove=remove)

    # -- search and fork -------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        limit: int = 20,
        raw: bool = False,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]:
        """Full-text search, best match first (``store.search``).

        Raises:
            TypeError, ValueError: a bad argument.
            NotSupportedError: the engine has no full-text search (Redis).
            StoreClosed, StoreError: the backend failed.
        """
        return await self._call(
            self.store.search,
            query,
            session_id=session_id,
            limit=limit,
            raw=raw,
            highlight=highlight,
        )

    async def fork(self, session_id: str, new_session_id: str, *, at: int | None = None) -> int:
        """Copy messages 1..``at`` (all if ``None``) into a new session; return how many
        (``store.fork``).

        Raises:
            TypeError, ValueError: a bad argument, no such source, or a target that
                holds messages; nothing changes.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        return await self._call(self.store.fork, session_id, new_session_id, at=at)

    # -- retention -------------------------------------------------------------------------

    async def prune(
        self,
        *,
        older_than: datetime | timedelta | None = None,
        keep_last: int | None = None,
        batch: int = 500,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> int:
        """Delete idle sessions and/or trim long ones, in batches; return how many
        messages (``store.prune``). ``progress`` runs in the worker thread.

        Raises:
            TypeError, ValueError: a bad argument, or neither ``older_than`` nor
                ``keep_last``.
            StoreBusy, StoreClosed, StoreError: the backend failed; batches already
                committed stay deleted.
        """
        return await self._call(
            self.store.prune,
            older_than=older_than,
            keep_last=keep_last,
            batch=batch,
            dry_run=dry_run,
            progress=progress,
        )

    async def expire_idle(self, ttl: timedelta, batch: int = 500) -> int:
        """Delete sessions idle for longer than ``ttl``; return how many sessions
        (``store.expire_idle``).

        Raises:
            TypeError, ValueError: a bad ``ttl`` or ``batch``.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        return await self._call(self.store.expire_idle, ttl, batch)

    async def rotate_keys(self, *, batch: int = 500, progress: Progress | None = None) -> int:
        """Re-wrap every data key under the primary master key; return how many
        (``store.rotate_keys``). ``progress`` runs in the worker thread.

        Raises:
            TypeError, ValueError: a bad ``batch`` or ``progress``.
            NotSupportedError: the store is not encrypted.
            DecryptionError: a data key no master key unwraps.
            StoreError: the key store failed; batches already done stay done.
        """
        return await self._call(self.store.rotate_keys, batch=batch, progress=progress)

    async def shred(self, session_id: str) -> None:
        """Delete the session's data key, then the session (``store.shred``).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            NotSupportedError: the store is not encrypted.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        await self._call(self.store.shred, session_id)

    async def vacuum(self) -> None:
        """Give space freed by deletions back to the file system (``store.vacuum``).

        Raises:
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        await self._call(self.store.vacuum)

    # -- JSON Lines ------------------------------------------------------------------------

    async def export_jsonl(
        self,
        fp: IO[str] | str | os.PathLike[str],
        *,
        session_ids: Iterable[str] | None = None,
        progress: Progress | None = None,
        decrypt: bool = False,
    ) -> int:
        """Write sessions as JSON Lines to an open text file or a path; return how many
        (``store.export_jsonl``). A path's file is replaced only once the export is
        complete. ``fp`` is written, and ``progress`` called, in the worker thread. An
        encrypted store writes ciphertext unless ``decrypt``.

        Raises:
            TypeError: a bad session id.
            ValueError: a named session does not exist (checked before writing).
            OSError: writing failed (a path's file is then left as it was).
            DecryptionError: (encrypted) a session does not decrypt.
            StoreClosed, StoreError: the backend failed.
        """
        return await self._call(
            self.store.export_jsonl,
            fp,
            session_ids=session_ids,
            progress=progress,
            decrypt=decrypt,
        )

    async def import_jsonl(
        self,
        lines: Iterable[str] | str | os.PathLike[str],
        *,
        on_conflict: Literal["error", "skip", "replace"] = "error",
        progress: Progress | None = None,
    ) -> int:
        """Read sessions written by ``export_jsonl`` from an open text file, an iterable
        of lines or a path (a ``str`` is a path); return how many were imported
        (``store.import_jsonl``). Each session is stored whole or not at all.

        Raises:
            ValueError: a bad ``on_conflict``, a bad line (named by number), or a
                session already stored with ``on_conflict="error"``.
            OSError: a path's file cannot be read.
            StoreBusy, StoreClosed, StoreError: the backend failed.
        """
        return await self._call(
            self.store.import_jsonl, lines, on_conflict=on_conflict, progress=progress
        )
