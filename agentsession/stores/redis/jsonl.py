"""JSON Lines export and import for ``RedisStore``: the storage work of its JSONL hooks.

Functions of the store's ``Keyspace``; the format and the checks are in
``stores.jsonl``. Each session is exported from one snapshot (one script reads its
record and all its messages, so a session is held in memory whole while it is
written) and imported by one script (replacing, with ``on_conflict="replace"``, in the
same step). Sessions are exported least recently
active first (the index order), so an import of an export exports identically.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from .. import runs
from ..base import load_metadata
from ..jsonl import ImportedSession, header_line, message_lines
from . import compaction
from .core import Keyspace, split_item, storable_json, text

__all__ = ("export_one", "missing", "session_ids", "store_session")


def session_ids(ks: Keyspace) -> Iterator[str]:
    for session_id, _ in ks.walk(descending=False):
        yield session_id


def missing(ks: Keyspace, session_ids: list[str]) -> list[str]:
    with ks.mapped():
        pipe = ks.client.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.exists(*ks.keys(session_id)[:2])
        found = pipe.execute()
    return [session_id for session_id, keys in zip(session_ids, found, strict=True) if not keys]


def export_one(ks: Keyspace, session_id: str, fp: IO[str]) -> bool:
    snapshot = ks.run(ks.scripts.snapshot, session_id, -1)
    if snapshot is None:  # deleted (or expired) since it was listed
        return False
    created, updated, metadata, count, *items = snapshot
    rows = [(seq, *split_item(item)) for seq, item in enumerate(items, 1)]
    # A session's keys are written together; should its record be missing all the
    # same, its messages' own times stand in.
    first = rows[0][1] if rows else 0.0
    created_at = float(created) if created else first
    updated_at = float(updated) if updated else (rows[-1][1] if rows else created_at)
    fp.write(
        header_line(
            session_id,
            created_at,
            updated_at,
            count,
            load_metadata(text(metadata) or "{}", session_id),
        )
    )
    for start in range(0, len(rows), 500):
        fp.write(message_lines(rows[start : start + 500]))
    return True


def store_session(ks: Keyspace, session: ImportedSession, on_conflict: str) -> bool:
    items = [
        f"{float(created)!r} ".encode() + message.encode("utf-8", "surrogatepass")
        for _, created, message, _ in session.rows
    ]
    updated_at = repr(float(session.updated_at))
    records = [storable_json(runs.to_json(run)) for run in session.runs]
    outcome = text(
        ks.run_ledger(
            ks.scripts.import_,
            session.session_id,
            ks.ttl_ms,
            on_conflict,
            repr(float(session.created_at)),
            updated_at,
            storable_json(session.metadata),
            len(records),
            *records,
            *items,
        )
    )
    if outcome == "skip":
        return False
    if outcome == "conflict":
        raise session.conflict()
    if session.compactions:
        first = items[0].decode("utf-8", "surrogatepass") if items else None
        compaction.restore(ks, session.session_id, session.compactions, first)
    ks.indexed(session.session_id, updated_at, exact=True)
    return True
