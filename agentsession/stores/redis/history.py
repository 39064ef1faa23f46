"""History management for ``RedisStore``: session records, metadata, paging and fork.

The storage work of ``RedisStore``'s history hooks, as functions of its ``Keyspace``; the
public methods and their argument checks are ``StoreBase``'s.

Listing reads the sessions index (a sorted set scored by ``updated_at``) a page at a
time and each listed session's record in one pipelined round trip. A metadata filter
is applied to those records in Python: it scans the sessions (Redis has no secondary
index for it here), so filtered listing costs time in proportion to the sessions it
reads, not to the sessions it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...exceptions import StoreBusy
from ...protocol import SessionInfo
from ..base import dump_metadata, load_metadata, merge_metadata, metadata_matches
from .core import PAGE, RETRIES, Keyspace, chunks, text

__all__ = ("fork", "put_metadata", "sessions", "update_metadata")


def _matching(
    ks: Keyspace, entries: list[tuple[str, float]], wanted: Mapping[str, Any]
) -> list[tuple[SessionInfo, float, str]]:
    """The records of index ``entries`` whose metadata matches ``wanted``, in order.

    Entries whose session is gone (expired, or deleted) are skipped and removed from
    the index.
    """
    infos = ks.infos([session_id for session_id, _ in entries])
    found: list[tuple[SessionInfo, float, str]] = []
    stale: list[str] = []
    for (session_id, score), info in zip(entries, infos, strict=True):
        if info is None:
            stale.append(session_id)
            continue
        record = info.session_info(session_id)
        if metadata_matches(record.metadata, wanted):
            found.append((record, score, session_id))
    ks.unindex(stale)
    return found


def sessions(
    ks: Keyspace,
    wanted: dict[str, Any],
    after: tuple[float, Any] | None,
    limit: int | None,
) -> list[tuple[SessionInfo, float, str]]:
    """``StoreBase._sessions``: keyset paging on ``(updated_at, session_id)``; with a
    metadata filter, sessions are read until ``limit`` match (a scan)."""
    size = PAGE if limit is None else min(PAGE, limit)
    found: list[tuple[SessionInfo, float, str]] = []
    for chunk in chunks(ks.walk(descending=True, after=after, page=size), size):
        found += _matching(ks, chunk, wanted)
        if limit is not None and len(found) >= limit:
            break
    return found if limit is None else found[:limit]


def put_metadata(ks: Keyspace, session_id: str, encoded: str) -> None:
    """Replace the metadata in one script (the TTL, if any, slides: it is a write)."""
    updated = ks.run(ks.scripts.put_metadata, session_id, ks.ttl_ms, encoded, "*", "")
    ks.indexed(session_id, updated)


def update_metadata(
    ks: Keyspace, session_id: str, changes: dict[str, Any], remove: list[str]
) -> dict[str, Any]:
    """Atomic compare-and-set: the metadata is read, merged, and written by a script only
    if it is still what was read (else the step is retried, up to 100 times).

    Raises:
        StoreBusy: the metadata kept changing.
    """
    session_key = ks.keys(session_id)[1]
    for _ in range(RETRIES):
        with ks.mapped():
            current = ks.client.hget(session_key, "metadata")
        stored = {} if current is None else load_metadata(text(current), session_id)
        merged = merge_metadata(stored, changes, remove)
        encoded = dump_metadata(merged)
        mode, expected = ("-", "") if current is None else ("=", current)
        updated = ks.run(ks.scripts.put_metadata, session_id, ks.ttl_ms, encoded, mode, expected)
        if updated is not None:
            ks.indexed(session_id, updated)
            return merged
    raise StoreBusy(f"the metadata of session {session_id!r} kept changing")


def fork(ks: Keyspace, session_id: str, new_session_id: str, at: int | None) -> int:
    """The source is read in one step (a snapshot) and the target written in one script,
    which first checks that the target holds no messages; the two sessions may live in
    different slots."""
    snapshot = ks.run(ks.scripts.snapshot, session_id, -1 if at is None else at)
    if snapshot is None:
        raise ValueError(f"no session {session_id!r} to fork")
    _created, _updated, metadata, count, *items = snapshot
    if at is not None and at > count:
        raise ValueError(f"at={at} is past the end of session {session_id!r} ({count} messages)")
    done, value = ks.run(ks.scripts.fork_into, new_session_id, ks.ttl_ms, metadata, *items)
    if not done:
        raise ValueError(
            f"session {new_session_id!r} already has {value} messages; "
            "fork into a new or empty session"
        )
    ks.indexed(new_session_id, value)
    return len(items)
