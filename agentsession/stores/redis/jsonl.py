"""JSON Lines export and import for ``RedisStore``: the engine hooks of ``JsonlMixin``.

The format and the checks are in ``_jsonl``. Each session is exported from one
snapshot (one script reads its record and all its messages, so a session is held in
memory whole while it is written) and imported by one script (replacing, with
``on_conflict="replace"``, in the same step). Sessions are exported least recently
active first (the index order), so an import of an export exports identically.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from ..base import load_metadata
from ..jsonl import ImportedSession, JsonlMixin, header_line, message_lines
from .core import RedisCore, split_item, storable_json, text

__all__ = ("RedisJsonlMixin",)


class RedisJsonlMixin(JsonlMixin, RedisCore):
    """``export_jsonl`` and ``import_jsonl`` for Redis."""

    def _jsonl_session_ids(self) -> Iterator[str]:
        for session_id, _ in self._walk(descending=False):
            yield session_id

    def _jsonl_missing(self, session_ids: list[str]) -> list[str]:
        with self._mapped():
            pipe = self._client.pipeline(transaction=False)
            for session_id in session_ids:
                pipe.exists(*self._keys(session_id)[:2])
            found = pipe.execute()
        return [session_id for session_id, keys in zip(session_ids, found, strict=True) if not keys]

    def _jsonl_export_one(self, session_id: str, fp: IO[str]) -> bool:
        snapshot = self._run(self._scripts.snapshot, session_id, -1)
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

    def _jsonl_store(self, session: ImportedSession, on_conflict: str) -> bool:
        items = [
            f"{float(created)!r} ".encode() + message.encode("utf-8", "surrogatepass")
            for _, created, message, _ in session.rows
        ]
        updated_at = repr(float(session.updated_at))
        outcome = text(
            self._run(
                self._scripts.import_,
                session.session_id,
                self._ttl_ms,
                on_conflict,
                repr(float(session.created_at)),
                updated_at,
                storable_json(session.metadata),
                *items,
            )
        )
        if outcome == "skip":
            return False
        if outcome == "conflict":
            raise session.conflict()
        self._indexed(session.session_id, updated_at, exact=True)
        return True
