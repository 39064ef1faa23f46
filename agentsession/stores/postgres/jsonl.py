"""JSON Lines export and import for ``PostgresStore``: the engine hooks of ``JsonlMixin``.

The storage work of ``PostgresStore``'s JSONL hooks, as functions of a pooled
connection; the format and the checks are in ``stores.jsonl``. Each session is exported from one
``REPEATABLE READ`` read-only transaction (a consistent snapshot; writers are not
blocked), its messages streamed through a server-side cursor, and imported in one
transaction holding the session's row.
"""

from __future__ import annotations

from typing import IO

from ..base import load_metadata
from ..jsonl import ImportedSession, header_line, message_lines
from . import compaction, ledger
from .base import (
    Conn,
    from_db_id,
    metadata_for_db,
    metadata_from_db,
    searchable,
    storable_text,
)
from .schema import Tables

__all__ = ("PAGE", "export_one", "id_page", "missing", "prepared", "store_session")

#: Sessions (and messages) read at a time.
PAGE = 500


def id_page(conn: Conn, t: Tables, after: int) -> list[tuple[int, str]]:
    """``(row id, session_id)`` of the sessions after row id ``after``, in order."""
    rows = conn.execute(
        f"SELECT id, session_id FROM {t.sessions} WHERE id > %s ORDER BY id LIMIT %s",
        (after, PAGE),
    ).fetchall()
    return [(row_id, from_db_id(key)) for row_id, key in rows]


def missing(conn: Conn, t: Tables, session_ids: list[str], keys: list[str]) -> list[str]:
    """Those of ``session_ids`` (stored as ``keys``) that have no record."""
    query = f"SELECT session_id FROM {t.sessions} WHERE session_id = ANY(%s)"
    found = {row[0] for row in conn.execute(query, (keys,)).fetchall()}
    return [
        session_id for session_id, key in zip(session_ids, keys, strict=True) if key not in found
    ]


def export_one(conn: Conn, t: Tables, session_id: str, key: str, fp: IO[str]) -> bool:
    """Write one session from one ``REPEATABLE READ`` snapshot; ``False`` if it is gone."""
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
            while rows := cursor.fetchmany(PAGE):
                fp.write(message_lines(rows))
        return True


class Prepared:
    """An imported session's values, converted for PostgreSQL before any SQL runs."""

    def __init__(self, session: ImportedSession) -> None:
        where = f"line {session.line}: session {session.session_id!r}"
        self.session = session
        self.metadata = metadata_for_db(load_metadata(session.metadata, session.session_id), where)
        self.seqs: list[int] = []
        self.times: list[float] = []
        self.texts: list[str] = []
        self.words: list[str] = []
        for seq, created, text, searchable_text in session.rows:
            self.seqs.append(seq)
            self.times.append(float(created))
            self.texts.append(storable_text(text, f"{where}, message {seq}"))
            self.words.append(searchable(searchable_text))


def prepared(session: ImportedSession) -> Prepared:
    """``session`` checked and converted (raises ``ValueError`` naming the line)."""
    return Prepared(session)


def store_session(conn: Conn, t: Tables, key: str, p: Prepared, on_conflict: str) -> bool:
    """Store one imported session in the caller's transaction, holding its row."""
    session = p.session
    old = conn.execute(
        f"SELECT id FROM {t.sessions} WHERE session_id = %s FOR UPDATE", (key,)
    ).fetchone()
    if old is not None:
        if on_conflict == "skip":
            return False
        if on_conflict == "error":
            raise session.conflict()
        conn.execute(f"DELETE FROM {t.messages} WHERE session = %s", old)
        compaction.delete_sessions(conn, t, [old[0]])
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
            p.metadata,
        ),
    ).fetchone()
    if created is None:  # another import created it meanwhile
        if on_conflict == "skip":
            return False
        raise session.conflict()
    if p.seqs:
        conn.execute(
            f"INSERT INTO {t.messages} (session, seq, created_at, message, search_text) "
            "SELECT %s, * FROM unnest(%s::integer[], %s::float8[], %s::text[], "
            "%s::text[])",
            (created[0], p.seqs, p.times, p.texts, p.words),
        )
    compaction.insert(conn, t, created[0], session.compactions)
    ledger.delete(conn, t, key)
    if session.runs:
        with conn.cursor() as cursor:
            cursor.executemany(ledger.insert_sql(t), [ledger.params(run) for run in session.runs])
    return True
