"""The full-text index, kept off the write path and caught up before each search.

An add stores messages only: no trigger, no text extraction inside its transaction.
``catch_up`` (called by ``search`` and ``vacuum``) indexes the rows added since the last
catch-up, ``id > last_indexed``, in short write transactions of ``CATCH_UP_BATCH`` rows
each: it computes each row's searchable text from its stored JSON
(``_serialize.message_text``), keeps it in the row's ``text`` column and adds it to the
FTS5 table (external content: the index reads ``text`` back for snippets).

Deletes stay in step by a trigger (see schema migration 0003): deleting a row that is
indexed (``id <= last_indexed``) removes it from the index in the same transaction, and
``last_indexed`` is lowered to the largest id left, so a new row can never reuse an id
the index counts as done (SQLite gives a new row ``max(id) + 1``). So after a catch-up
the index holds exactly the stored rows: search results are complete and never name a
deleted message.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ..._serialize import message_text
from .schema import FTS_STATE, MESSAGES, MESSAGES_FTS

__all__ = ("CATCH_UP_BATCH", "catch_up", "index_batch", "pending", "stored_text")

#: Rows indexed per write transaction: each catch-up step stays short.
CATCH_UP_BATCH = 500

Runner = Callable[[Callable[[sqlite3.Connection], Any]], Any]


def stored_text(message: str) -> str:
    """The searchable text of a stored JSON message ('' if it is not a JSON object)."""
    try:
        decoded = json.loads(message)
    except (TypeError, ValueError):
        return ""
    return message_text(decoded) if isinstance(decoded, dict) else ""


def pending(conn: sqlite3.Connection) -> bool:
    """Whether some stored row is not in the index yet (a read; cheap)."""
    row = conn.execute(
        f"SELECT (SELECT coalesce(max(id), 0) FROM {MESSAGES}) > "
        f"(SELECT last_indexed FROM {FTS_STATE})"
    ).fetchone()
    return bool(row[0])


def index_batch(conn: sqlite3.Connection, batch: int = CATCH_UP_BATCH) -> bool:
    """Index the next ``batch`` unindexed rows (inside the caller's write transaction).

    Returns:
        Whether rows may be left to index.
    """
    (last,) = conn.execute(f"SELECT last_indexed FROM {FTS_STATE}").fetchone()
    rows = conn.execute(
        f"SELECT id, message, text FROM {MESSAGES} WHERE id > ? ORDER BY id LIMIT ?",
        (last, batch),
    ).fetchall()
    if not rows:
        return False
    texts = [(row_id, stored_text(message), old) for row_id, message, old in rows]
    conn.executemany(
        f"UPDATE {MESSAGES} SET text = ? WHERE id = ?",
        [(text, row_id) for row_id, text, old in texts if text != old],
    )
    conn.executemany(
        f"INSERT INTO {MESSAGES_FTS} (rowid, text) VALUES (?, ?)",
        [(row_id, text) for row_id, text, _ in texts],
    )
    conn.execute(f"UPDATE {FTS_STATE} SET last_indexed = ?", (rows[-1][0],))
    return len(rows) == batch


def catch_up(read: Runner, write: Runner) -> None:
    """Bring the index up to every row committed before the call.

    Args:
        read: runs a callable on a connection (``SQLiteStore._read``).
        write: runs a callable in a write transaction (``SQLiteStore._write``).

    Raises:
        StoreBusy, StoreClosed, StoreError: as ``read`` and ``write`` raise them;
            the steps already committed stay indexed.
    """
    while read(pending) and write(index_batch):
        pass
