"""The usage ledger of ``SQLiteStore``: run records in ``RUNS``, as functions of a connection.

The store runs ``insert`` inside the write transaction of the run's last add (so a run
costs no extra transaction), and the readers in one read.
"""

from __future__ import annotations

import sqlite3

from ...protocol import RunRecord, SessionUsage
from ..runs import COLUMNS, COUNTS, from_row, to_row, usage_from_sums
from .schema import RUNS, SESSIONS

__all__ = (
    "delete",
    "delete_session_key",
    "insert",
    "runs",
    "usage",
    "usage_by_session",
)

_INSERT = f"INSERT INTO {RUNS} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_SUMS = f"count(*), {', '.join(f'sum({name})' for name in COUNTS)}, min(started_at), max(ended_at)"


def insert(conn: sqlite3.Connection, records: list[RunRecord]) -> None:
    """Add run records (in the caller's write transaction)."""
    conn.executemany(_INSERT, [to_row(run) for run in records])


def delete(conn: sqlite3.Connection, session_id: str) -> None:
    """Delete the session's run records (in the caller's write transaction)."""
    conn.execute(f"DELETE FROM {RUNS} WHERE session_id = ?", (session_id,))


def delete_session_key(conn: sqlite3.Connection, session: int) -> None:
    """Delete the run records of the session whose sessions row is ``session``."""
    conn.execute(
        f"DELETE FROM {RUNS} WHERE session_id = (SELECT session_id FROM {SESSIONS} WHERE id = ?)",
        (session,),
    )


def usage(conn: sqlite3.Connection, session_id: str) -> SessionUsage:
    row = conn.execute(f"SELECT {_SUMS} FROM {RUNS} WHERE session_id = ?", (session_id,)).fetchone()
    return usage_from_sums(row[0], row[1:-2], row[-2], row[-1])


def runs(conn: sqlite3.Connection, session_id: str, limit: int) -> list[RunRecord]:
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM {RUNS} WHERE session_id = ? "
        "ORDER BY ended_at DESC, id DESC LIMIT ?",
        (session_id, limit),
    ).fetchall()
    return [from_row(row) for row in rows]


def usage_by_session(conn: sqlite3.Connection, limit: int | None) -> list[tuple[str, SessionUsage]]:
    page = "" if limit is None else f"LIMIT {int(limit)}"
    rows = conn.execute(
        f"SELECT session_id, {_SUMS} FROM {RUNS} GROUP BY session_id "
        f"ORDER BY sum(total_tokens) DESC, session_id {page}"
    ).fetchall()
    return [(row[0], usage_from_sums(row[1], row[2:-2], row[-2], row[-1])) for row in rows]
