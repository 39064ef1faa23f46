"""Compaction for ``RedisStore``: each compaction's archived items in the session's hash.

A compaction in force is one field of the session's hash (``KEYS[2]``), apart from its
message list, so the list every read and add touches stays as it was::

    compactions     how many compactions are in force (no field: none)
    compaction:<n>  JSON [record, summary item, [archived items...]], items as the list
                    stores them ("<created_at> <message JSON>")

The hash shares the session's expiry and goes with it (``clear_session``, prune, expiry,
a replacing import). Each operation is one script on the session's keys, so one atomic
step, on one node of a Cluster (the scripts are in ``compaction_scripts``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..base import Row
from .core import split_item, storable_json, text

if TYPE_CHECKING:
    from .core import Keyspace

__all__ = ("archive", "compact", "records", "restore", "uncompact")


def _row(item: str) -> Row:
    return 1, split_item(item)[1]


def compact(ks: Keyspace, session_id: str, cut: int, summary: str, record: str) -> None:
    if not ks.run(ks.scripts.compact, session_id, cut, summary, record):
        raise ValueError(f"session {session_id!r} holds no more than {cut} messages")


def uncompact(ks: Keyspace, session_id: str) -> tuple[str, Row] | None:
    reply = ks.run(ks.scripts.uncompact, session_id, ks.ttl_ms)
    if reply is None:
        return None
    record, summary = reply
    return text(record), _row(text(summary))


def archive(ks: Keyspace, session_id: str) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
    items, entries = ks.run(ks.scripts.archive, session_id)
    live = [(n, split_item(item)[1]) for n, item in enumerate(items, 1)]
    found = []
    for entry in entries:
        record, summary, moved = json.loads(text(entry))
        rows: list[Row] = [split_item(item) for item in moved]
        found.append((str(record), _row(summary), rows))
    return live, found


def restore(
    ks: Keyspace,
    session_id: str,
    entries: list[tuple[str, str, list[tuple[float, str]]]],
    first: str | None,
) -> None:
    """Store an imported session's compactions (oldest first) right after the import
    wrote it; ``first`` is its first list item as stored (its summary, if it is one).
    A second step: if it fails, the imported session is deleted again (whole or not at
    all, as an import promises) and the error raised."""
    archives = [
        [f"{float(created)!r} {storable_json(message)}" for created, message in archived]
        for _, _, archived in entries
    ]
    # A summary is stored as the list item it became: the session's first item, or the
    # first item a later compaction archived (the uncompact script compares items).
    heads = [items[0] for items in archives] + ([first] if first is not None else [])
    values = []
    for n, (record, summary, _) in enumerate(entries):
        found = [item for item in heads[n + 1 :] if split_item(item)[1] == summary]
        stored = found[0] if found else f"0.0 {storable_json(summary)}"
        entry = [record, stored, archives[n]]
        values.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
    try:
        ks.run(ks.scripts.restore, session_id, *values)
    except BaseException:
        ks.run_ledger(ks.scripts.clear, session_id)
        raise


def records(ks: Keyspace, session_id: str) -> list[tuple[str, Row]]:
    """Each compaction's ``(record, summary row)``, oldest first, without its items."""
    return [
        (text(record), _row(text(summary)))
        for record, summary in ks.run(ks.scripts.records, session_id)
    ]
