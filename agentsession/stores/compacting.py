"""The engine-neutral work of compaction, over ``StoreBase``'s compaction hooks.

``StoreBase``'s public methods check their arguments and call these; each engine's
``_compact``, ``_uncompact`` and ``_archive`` do the storage (see ``StoreBase``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._serialize import decode_messages, encode_messages
from ..compaction import (
    compaction_cut,
    count_tokens,
    dump_record,
    is_cut_safe,
    load_record,
    summary_item,
)
from ..protocol import CompactionRecord
from ..window import tool_safe_tail

if TYPE_CHECKING:
    from .base import Row, StoreBase

__all__ = ("candidates", "compact", "records", "uncompact", "with_archived")


def _where(session_id: str) -> str:
    return f"session {session_id!r}"


def _decoded(session_id: str, rows: list[Row]) -> list[dict[str, Any]]:
    return decode_messages(rows, _where(session_id))


def candidates(store: StoreBase, session_id: str, keep_turns: int) -> list[dict[str, Any]]:
    items = _decoded(session_id, store._all_rows(session_id))
    return items[: compaction_cut(items, keep_turns)]


def compact(
    store: StoreBase, session_id: str, summary: str, cut: int, model: str
) -> CompactionRecord:
    rows = store._all_rows(session_id)
    items = _decoded(session_id, rows)
    if len(items) != len(rows):
        raise ValueError(f"session {session_id!r} holds a corrupt message: it cannot be compacted")
    if cut >= len(items):
        raise ValueError(
            f"items={cut} must leave at least one message after it: session "
            f"{session_id!r} holds {len(items)}"
        )
    if not is_cut_safe(items, cut):
        raise ValueError(
            f"items={cut} would split a tool exchange (or a reasoning item from what "
            f"follows it) in session {session_id!r}"
        )
    item = summary_item(summary)
    kept = items[cut:]
    record = CompactionRecord(
        session_id=session_id,
        compacted_items=cut,
        kept_items=len(kept),
        summary=summary,
        tokens_before=count_tokens(items),
        tokens_after=count_tokens([item, *kept]),
        created_at=datetime.fromtimestamp(store._clock(), timezone.utc),
        model=model,
    )
    store._compact(session_id, cut, encode_messages([item])[0], dump_record(record))
    return record


def uncompact(store: StoreBase, session_id: str) -> CompactionRecord | None:
    entry = store._uncompact(session_id)
    if entry is None:
        return None
    stored, summary = entry
    decoded = _decoded(session_id, [summary])
    return load_record(session_id, stored, decoded[0] if decoded else {})


def records(store: StoreBase, session_id: str) -> list[CompactionRecord]:
    found = []
    for stored, summary in store._compaction_records(session_id):
        decoded = _decoded(session_id, [summary])
        found.append(load_record(session_id, stored, decoded[0] if decoded else {}))
    return found


def original_rows(live: list[Row], archive: list[tuple[str, Row, list[Row]]]) -> list[Row]:
    """The rows of a history with every compaction in ``archive`` undone, newest first:
    what ``_uncompact`` would leave after as many calls as there are entries."""
    rows = list(live)
    for _, (_, summary), archived in reversed(archive):
        if rows and rows[0][1] == summary:
            rows = rows[1:]
        rows = list(archived) + rows
    return rows


def with_archived(
    store: StoreBase, session_id: str, limit: int | None, tool_safe: bool
) -> list[dict[str, Any]]:
    live, archive = store._archive(session_id)
    items = _decoded(session_id, original_rows(live, archive))
    if limit is None:
        return items
    if limit == 0:
        return []
    start = max(0, len(items) - limit)
    return tool_safe_tail(items, start) if tool_safe else items[start:]
