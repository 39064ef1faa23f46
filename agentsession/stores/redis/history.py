"""History management for ``RedisStore``: session records, metadata, paging and fork.

``RedisHistoryMixin`` is a base class of ``RedisStore``; with its own base it adds
JSON Lines export and import (see ``stores.redis.jsonl``). Every method is blocking and
thread-safe, like the rest of the store; ``StoreMemory`` has an async twin of each.

Listing reads the sessions index (a sorted set scored by ``updated_at``) a page at a
time and each listed session's record in one pipelined round trip. A metadata filter
is applied to those records in Python: it scans the sessions (Redis has no secondary
index for it here), so filtered listing costs time in proportion to the sessions it
reads, not to the sessions it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._validate import check_session_id
from ...exceptions import NotSupportedError, StoreBusy
from ...protocol import SearchHit, SessionInfo, SessionPage
from ..base import (
    check_count,
    check_fork,
    check_metadata_filter,
    check_search,
    decode_cursor,
    dump_metadata,
    encode_cursor,
    load_metadata,
    metadata_matches,
)
from .core import PAGE, RETRIES, chunks, storable_json, text
from .jsonl import RedisJsonlMixin

__all__ = ("RedisHistoryMixin",)


class RedisHistoryMixin(RedisJsonlMixin):
    """Sessions as records, metadata, fork; search says it is not supported; JSONL."""

    # -- sessions and metadata -------------------------------------------------------------

    def _matching(
        self, entries: list[tuple[str, float]], wanted: Mapping[str, Any]
    ) -> list[tuple[SessionInfo, float]]:
        """The records of index ``entries`` whose metadata matches ``wanted``, in order.

        Entries whose session is gone (expired, or deleted) are skipped and removed
        from the index.
        """
        infos = self._infos([session_id for session_id, _ in entries])
        found: list[tuple[SessionInfo, float]] = []
        stale: list[str] = []
        for (session_id, score), info in zip(entries, infos, strict=True):
            if info is None:
                stale.append(session_id)
                continue
            record = info.session_info(session_id)
            if metadata_matches(record.metadata, wanted):
                found.append((record, score))
        self._unindex(stale)
        return found

    def list_sessions(self, *, metadata: Mapping[str, Any] | None = None) -> list[SessionInfo]:
        """Return every session (or those matching ``metadata``), newest activity first.

        Sessions are read from the index a page at a time; an index entry whose session
        has expired or been deleted is skipped and removed. A metadata filter is applied
        to each session's record in Python (it scans every session).

        Args:
            metadata: keep only sessions whose metadata holds every one of these
                key/value pairs (values: str, number, bool or None; compared by JSON
                type, so ``True`` does not match ``1``).

        Raises:
            TypeError: a bad ``metadata`` filter.
            StoreClosed, StoreError: the store is closed or Redis failed.
        """
        wanted = check_metadata_filter(metadata)
        sessions: list[SessionInfo] = []
        for chunk in chunks(self._walk(descending=True), PAGE):
            sessions += [record for record, _ in self._matching(chunk, wanted)]
        return sessions

    def list_sessions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionPage:
        """Return one page of sessions, newest activity first, and the next page's cursor.

        Paging is by keyset on ``(updated_at, session_id)``, so a page costs the same
        however deep, and sessions with the same ``updated_at`` are neither repeated nor
        dropped. A session that becomes active while you page moves to the front: it is
        not returned twice, but if it had not been reached yet it is not returned at all
        in this walk. With a metadata filter, a page reads sessions until it has
        ``limit`` matches (a scan; see ``list_sessions``).

        Args:
            limit: at most this many sessions per page (1 or more).
            cursor: ``next_cursor`` of the previous page; ``None`` for the first page.
            metadata: the same filter as ``list_sessions``; pass it on every page.

        Raises:
            TypeError: a bad ``limit``, ``cursor`` or ``metadata``.
            ValueError: ``limit`` below 1, or ``cursor`` was not made by this method.
            StoreClosed, StoreError: the store is closed or Redis failed.
        """
        limit = check_count(limit, "limit", minimum=1)
        wanted = check_metadata_filter(metadata)
        after: tuple[float, str] | None = None
        if cursor is not None:
            updated, key = decode_cursor(cursor)
            if not isinstance(key, str):
                raise ValueError(
                    f"cursor {cursor!r:.60} is not a cursor returned by list_sessions_page"
                )
            after = (updated, key)
        size = min(PAGE, limit + 1)
        found: list[tuple[SessionInfo, float]] = []
        for chunk in chunks(self._walk(descending=True, after=after, page=size), size):
            found += self._matching(chunk, wanted)
            if len(found) > limit:
                break
        page = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last, score = page[-1]
            next_cursor = encode_cursor(score, last.session_id)
        return SessionPage([record for record, _ in page], next_cursor)

    def session_info(self, session_id: str) -> SessionInfo | None:
        """Return what the store knows about one session, or ``None`` if it has no record.

        One script: count, times and metadata are read in one step.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreClosed, StoreError: the store is closed or Redis failed.
        """
        check_session_id(session_id)
        (info,) = self._infos([session_id])
        return None if info is None else info.session_info(session_id)

    def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace the session's metadata with ``metadata`` (a JSON object).

        Creates the session's record (with no messages) if it has none yet. Changing
        metadata is not activity: ``updated_at`` stays as it was (the TTL, if any,
        slides: it is a write).

        Raises:
            TypeError: ``metadata`` is not a dict of JSON values; nothing is changed.
            ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        encoded = storable_json(dump_metadata(metadata))
        updated = self._run(self._scripts.put_metadata, session_id, self._ttl_ms, encoded, "*", "")
        self._indexed(session_id, updated)

    def update_metadata(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        remove: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Merge ``changes`` into the session's metadata (top-level keys); return the result.

        Atomic compare-and-set: the metadata is read, merged, and written by a script
        only if it is still what was read (else the step is retried), so concurrent
        updates of different keys never lose each other. Creates the session's record
        (with no messages) if it has none yet; ``updated_at`` does not change.

        Args:
            session_id: the session.
            changes: keys to set (a value ``None`` stores JSON null; it does not delete).
            remove: keys to delete (missing keys are ignored).

        Raises:
            TypeError: ``changes`` is not a dict of JSON values, or a key in ``remove``
                is not a str; nothing is changed.
            ValueError: a bad ``session_id``.
            StoreBusy: the metadata kept changing for 100 attempts; or as for
                ``add_messages``.
            StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        dump_metadata(changes, "changes")
        if isinstance(remove, str) or not all(isinstance(key, str) for key in remove):
            raise TypeError(f"remove must be a list of str keys, got {remove!r}")
        session_key = self._keys(session_id)[1]
        for _ in range(RETRIES):
            with self._mapped():
                current = self._client.hget(session_key, "metadata")
            merged = {} if current is None else load_metadata(text(current), session_id)
            merged.update(changes)
            for key in remove:
                merged.pop(key, None)
            encoded = storable_json(dump_metadata(merged))
            mode, expected = ("-", "") if current is None else ("=", current)
            updated = self._run(
                self._scripts.put_metadata, session_id, self._ttl_ms, encoded, mode, expected
            )
            if updated is not None:
                self._indexed(session_id, updated)
                return merged
        raise StoreBusy(f"the metadata of session {session_id!r} kept changing")

    # -- search ----------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        limit: int = 20,
        raw: bool = False,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]:
        """Not available: Redis has no full-text index here (no RediSearch module).

        The arguments are checked as every store checks them, then
        ``NotSupportedError`` is raised.

        Raises:
            TypeError, ValueError: bad arguments, as for ``SQLiteStore.search``.
            StoreClosed: the store is closed.
            NotSupportedError: otherwise, always (also a ``NotImplementedError``); the
                message names the stores that have full-text search.
        """
        check_search(query, session_id, limit, highlight)
        self._check_open()
        raise NotSupportedError(
            "RedisStore has no full-text search: Redis offers no full-text index without "
            "the RediSearch module. Use SQLiteStore or PostgresStore for search(), or "
            "export_jsonl() the sessions into one of them."
        )

    # -- fork ------------------------------------------------------------------------------

    def fork(self, session_id: str, new_session_id: str, *, at: int | None = None) -> int:
        """Copy the session's history up to position ``at`` into a new session.

        The source is read in one step (a snapshot) and the target written in one
        script, which first checks that the target holds no messages; the two sessions
        may live in different slots. The copy keeps each message's ``created_at`` and
        the source's metadata (replacing any the target's record had); the new session
        is last active now. The source is not changed.

        Args:
            session_id: the session to copy from.
            new_session_id: the session to create; it must not hold messages yet.
            at: copy messages 1..``at`` (1-based, inclusive); ``None`` copies them all,
                ``0`` none (the new session then has only the metadata).

        Returns:
            How many messages were copied.

        Raises:
            TypeError: a bad argument type.
            ValueError: a bad id, the same id twice, no session ``session_id``,
                ``new_session_id`` already holds messages, or ``at`` is negative or
                past the source's last message. Nothing is changed.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_fork(session_id, new_session_id, at)
        snapshot = self._run(self._scripts.snapshot, session_id, -1 if at is None else at)
        if snapshot is None:
            raise ValueError(f"no session {session_id!r} to fork")
        _created, _updated, metadata, count, *items = snapshot
        if at is not None and at > count:
            raise ValueError(
                f"at={at} is past the end of session {session_id!r} ({count} messages)"
            )
        done, value = self._run(
            self._scripts.fork_into, new_session_id, self._ttl_ms, metadata, *items
        )
        if not done:
            raise ValueError(
                f"session {new_session_id!r} already has {value} messages; "
                "fork into a new or empty session"
            )
        self._indexed(new_session_id, value)
        return len(items)
