"""JSON Lines export and import for ``PostgresStore``: the engine hooks of ``JsonlMixin``.

The format and the checks are in ``_jsonl``. Each session is exported from one
``REPEATABLE READ`` read-only transaction (a consistent snapshot; writers are not
blocked), its messages streamed through a server-side cursor, and imported in one
transaction holding the session's row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from ..base import load_metadata
from ..jsonl import ImportedSession, JsonlMixin, header_line, message_lines
from .base import (
    Conn,
    PostgresCore,
    db_id,
    from_db_id,
    metadata_for_db,
    metadata_from_db,
    searchable,
    storable_text,
)

__all__ = ("PostgresJsonlMixin",)

_PAGE = 500


class PostgresJsonlMixin(JsonlMixin, PostgresCore):
    """``export_jsonl`` and ``import_jsonl`` for PostgreSQL."""

    def _jsonl_session_ids(self) -> Iterator[str]:
        query = (
            f"SELECT id, session_id FROM {self._tables.sessions} WHERE id > %s ORDER BY id LIMIT %s"
        )

        def page(after: int) -> list[tuple[int, str]]:
            return self._read(lambda conn: conn.execute(query, (after, _PAGE)).fetchall())

        rows = page(0)
        while True:
            for _, key in rows:
                yield from_db_id(key)
            if len(rows) < _PAGE:
                return
            rows = page(rows[-1][0])

    def _jsonl_missing(self, session_ids: list[str]) -> list[str]:
        keys = [db_id(session_id) for session_id in session_ids]
        query = f"SELECT session_id FROM {self._tables.sessions} WHERE session_id = ANY(%s)"
        found = {row[0] for row in self._read(lambda conn: conn.execute(query, (keys,)).fetchall())}
        return [
            session_id
            for session_id, key in zip(session_ids, keys, strict=True)
            if key not in found
        ]

    def _jsonl_export_one(self, session_id: str, fp: IO[str]) -> bool:
        t = self._tables
        key = db_id(session_id)

        def read(conn: Conn) -> bool:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                row = conn.execute(
                    "SELECT id, created_at, updated_at, message_count, metadata::text "
                    f"FROM {t.sessions} WHERE session_id = %s",
                    (key,),
                ).fetchone()
                if row is None:  # deleted since it was listed
                    return False
                session, created, updated, count, metadata = row
                fp.write(
                    header_line(
                        session_id,
                        created,
                        updated,
                        count,
                        load_metadata(metadata_from_db(metadata), session_id),
                    )
                )
                with conn.cursor(name="agentsession_export") as cursor:
                    cursor.execute(
                        f"SELECT seq, created_at, message FROM {t.messages} WHERE session = %s "
                        "ORDER BY seq",
                        (session,),
                    )
                    while rows := cursor.fetchmany(_PAGE):
                        fp.write(message_lines(rows))
                return True

        return self._run(read)

    def _jsonl_store(self, session: ImportedSession, on_conflict: str) -> bool:
        t = self._tables
        key = db_id(session.session_id)
        where = f"line {session.line}: session {session.session_id!r}"
        metadata = metadata_for_db(load_metadata(session.metadata, session.session_id), where)
        seqs, times, texts, words = [], [], [], []
        for seq, created, text, searchable_text in session.rows:
            seqs.append(seq)
            times.append(float(created))
            texts.append(storable_text(text, f"{where}, message {seq}"))
            words.append(searchable(searchable_text))

        def write(conn: Conn) -> bool:
            old = conn.execute(
                f"SELECT id FROM {t.sessions} WHERE session_id = %s FOR UPDATE", (key,)
            ).fetchone()
            if old is not None:
                if on_conflict == "skip":
                    return False
                if on_conflict == "error":
                    raise session.conflict()
                conn.execute(f"DELETE FROM {t.messages} WHERE session = %s", old)
                conn.execute(f"DELETE FROM {t.sessions} WHERE id = %s", old)
            created = conn.execute(
                f"INSERT INTO {t.sessions} (session_id, created_at, updated_at, message_count, "
                "last_seq, metadata) VALUES (%s, %s, %s, %s, %s, %s::jsonb) "
                "ON CONFLICT (session_id) DO NOTHING RETURNING id",
                (
                    key,
                    float(session.created_at),
                    float(session.updated_at),
                    session.message_count,
                    session.message_count,
                    metadata,
                ),
            ).fetchone()
            if created is None:  # another import created it meanwhile
                if on_conflict == "skip":
                    return False
                raise session.conflict()
            if seqs:
                conn.execute(
                    f"INSERT INTO {t.messages} (session, seq, created_at, message, search_text) "
                    "SELECT %s, * FROM unnest(%s::integer[], %s::float8[], %s::text[], "
                    "%s::text[])",
                    (created[0], seqs, times, texts, words),
                )
            return True

        return self._write(write)
