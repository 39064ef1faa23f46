"""The full-text index off the write path (``stores.sqlite.fts``) and its migration."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from agentsession.stores.sqlite import fts
from agentsession.stores.sqlite.schema import SCHEMA_VERSION, ensure_schema, migrations

MESSAGES = "agentsession_messages"


def _message(text: str) -> str:
    return json.dumps({"role": "user", "content": text})


def _add(conn: sqlite3.Connection, *texts: str, session: int = 1) -> list[int]:
    """Insert messages as an add does now: no text column, no index work."""
    ids = []
    for text in texts:
        (seq,) = conn.execute(
            f"SELECT coalesce(max(seq), 0) + 1 FROM {MESSAGES} WHERE session = ?", (session,)
        ).fetchone()
        cursor = conn.execute(
            f"INSERT INTO {MESSAGES} (session, seq, created_at, message) VALUES (?, ?, 0, ?)",
            (session, seq, _message(text)),
        )
        ids.append(int(cursor.lastrowid or 0))
    return ids


def _write(conn: sqlite3.Connection) -> Any:
    def run(work: Any) -> Any:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    return run


def _catch_up(conn: sqlite3.Connection) -> None:
    fts.catch_up(lambda work: work(conn), _write(conn))


def _found(conn: sqlite3.Connection, word: str) -> list[str]:
    rows = conn.execute(
        f"SELECT m.message FROM {MESSAGES}_fts JOIN {MESSAGES} m ON m.id = {MESSAGES}_fts.rowid "
        f"WHERE {MESSAGES}_fts MATCH ? ORDER BY m.id",
        (word,),
    )
    return [json.loads(row[0])["content"] for row in rows]


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    ensure_schema(conn, None, 5.0)
    yield conn
    conn.close()


def test_adds_do_no_index_work_and_a_catch_up_makes_search_complete(
    conn: sqlite3.Connection,
) -> None:
    _add(conn, "alpha one", "beta two", "alpha three")
    assert fts.pending(conn)
    assert _found(conn, "alpha") == []  # nothing indexed inside the adds
    _catch_up(conn)
    assert not fts.pending(conn)
    assert _found(conn, "alpha") == ["alpha one", "alpha three"]
    _add(conn, "alpha four")
    _catch_up(conn)
    assert _found(conn, "alpha") == ["alpha one", "alpha three", "alpha four"]


def test_deleted_messages_leave_the_index_and_reused_ids_get_indexed(
    conn: sqlite3.Connection,
) -> None:
    ids = _add(conn, "alpha one", "alpha two", "alpha three")
    _catch_up(conn)
    conn.execute(f"DELETE FROM {MESSAGES} WHERE id = ?", (ids[1],))
    assert _found(conn, "alpha") == ["alpha one", "alpha three"]
    # Deleting the newest row lets SQLite give its id to the next row: that row must
    # still be indexed, and the old text must not be found under it.
    conn.execute(f"DELETE FROM {MESSAGES} WHERE id = ?", (ids[2],))
    (reused,) = _add(conn, "gamma reborn")
    assert reused in ids[1:]  # an id the index had counted as done
    _catch_up(conn)
    assert _found(conn, "alpha") == ["alpha one"]
    assert _found(conn, "gamma") == ["gamma reborn"]
    # A deleted row that was never indexed leaves nothing behind either.
    (late,) = _add(conn, "delta late")
    conn.execute(f"DELETE FROM {MESSAGES} WHERE id = ?", (late,))
    _catch_up(conn)
    assert _found(conn, "delta") == []
    conn.execute(f"INSERT INTO {MESSAGES}_fts({MESSAGES}_fts) VALUES ('integrity-check')")


def test_a_bulk_delete_in_any_order_leaves_no_stale_entry(conn: sqlite3.Connection) -> None:
    _add(conn, *[f"alpha {i}" for i in range(20)])
    _catch_up(conn)
    conn.execute(
        f"DELETE FROM {MESSAGES} WHERE id IN (SELECT id FROM {MESSAGES} ORDER BY id DESC LIMIT 15)"
    )
    _add(conn, "alpha new")
    _catch_up(conn)
    assert _found(conn, "alpha") == [f"alpha {i}" for i in range(5)] + ["alpha new"]
    conn.execute(f"INSERT INTO {MESSAGES}_fts({MESSAGES}_fts) VALUES ('integrity-check')")


def test_catch_up_works_in_short_steps(conn: sqlite3.Connection) -> None:
    _add(conn, *[f"word {i}" for i in range(23)])
    steps: list[bool] = []

    def write(work: Any) -> Any:
        more = _write(conn)(lambda c: fts.index_batch(c, batch=5))
        steps.append(more)
        return more

    fts.catch_up(lambda work: work(conn), write)
    assert steps == [True, True, True, True, False]
    assert len(_found(conn, "word")) == 23


def test_a_database_of_the_previous_schema_migrates_and_keeps_its_search_results(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    migrations.apply(Database(old), stop_before="0003_fts_off_the_write_path")
    old.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    # Written the old way: the text column filled in, the triggers indexing.
    for seq, text in enumerate(["alpha old", "beta old", "alpha older"], 1):
        old.execute(
            f"INSERT INTO {MESSAGES} (session, seq, created_at, message, text) "
            "VALUES (1, ?, 0, ?, ?)",
            (seq, _message(text), text),
        )
    assert _found(old, "alpha") == ["alpha old", "alpha older"]
    old.close()

    conn = sqlite3.connect(path, isolation_level=None)
    ensure_schema(conn, path, 5.0)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert not fts.pending(conn)
    assert _found(conn, "alpha") == ["alpha old", "alpha older"]
    _add(conn, "alpha new")
    assert _found(conn, "alpha") == ["alpha old", "alpha older"]  # no insert trigger
    _catch_up(conn)
    assert _found(conn, "alpha") == ["alpha old", "alpha older", "alpha new"]
    conn.execute(f"DELETE FROM {MESSAGES} WHERE message LIKE '%alpha old\"%'")
    assert _found(conn, "alpha") == ["alpha older", "alpha new"]
    conn.execute(f"INSERT INTO {MESSAGES}_fts({MESSAGES}_fts) VALUES ('integrity-check')")
    conn.close()


def test_unreadable_rows_are_indexed_as_empty(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"INSERT INTO {MESSAGES} (session, seq, created_at, message) VALUES (1, 1, 0, ?)",
        ("{not json",),
    )
    conn.execute(
        f"INSERT INTO {MESSAGES} (session, seq, created_at, message) VALUES (1, 2, 0, '[1]')"
    )
    _catch_up(conn)
    assert not fts.pending(conn)
    assert fts.stored_text("{not json") == "" and fts.stored_text("[1]") == ""
