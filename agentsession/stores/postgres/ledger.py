"""The usage ledger of ``PostgresStore``: run records in ``{schema}.agentsession_runs``.

Text fields are stored as session ids are (``base.db_id``: NUL escaped). ``insert_sql``
is a data-modifying ``WITH`` clause, so the run's record rides in the statement of its
last add: no extra statement or round trip per run.
"""

from __future__ import annotations

from typing import Any

from ...protocol import RunRecord, SessionUsage
from ..runs import COLUMNS, COUNTS, from_row, to_row, usage_from_sums
from .base import Conn, db_id, from_db_id
from .schema import Tables

__all__ = ("delete", "insert_sql", "params", "runs", "usage", "usage_by_session")

_TEXTS = {"run_id", "session_id", "agent", "model", "outcome"}
_SUMS = f"count(*), {', '.join(f'sum({name})' for name in COUNTS)}, min(started_at), max(ended_at)"


def params(run: RunRecord) -> dict[str, Any]:
    """The record's values as ``%(run_<column>)s`` parameters of ``insert_sql``."""
    return {
        f"run_{name}": db_id(value, f"run.{name}") if name in _TEXTS else value
        for name, value in zip(COLUMNS, to_row(run), strict=True)
    }


def insert_sql(t: Tables) -> str:
    """``INSERT`` of one record from the ``params`` parameters (no ``RETURNING``)."""
    names = ", ".join(COLUMNS)
    values = ", ".join(f"%(run_{name})s" for name in COLUMNS)
    return f"INSERT INTO {t.runs} ({names}) VALUES ({values})"


def _record(row: Any) -> RunRecord:
    return from_row(
        from_db_id(value) if name in _TEXTS else value
        for name, value in zip(COLUMNS, row, strict=True)
    )


def delete(conn: Conn, t: Tables, key: str) -> None:
    """Delete the run records of the session stored as ``key`` (in the caller's step)."""
    conn.execute(f"DELETE FROM {t.runs} WHERE session_id = %s", (key,))


def usage(conn: Conn, t: Tables, key: str) -> SessionUsage:
    row = conn.execute(f"SELECT {_SUMS} FROM {t.runs} WHERE session_id = %s", (key,)).fetchone()
    assert row is not None
    return usage_from_sums(row[0], row[1:-2], row[-2], row[-1])


def runs(conn: Conn, t: Tables, key: str, limit: int) -> list[RunRecord]:
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM {t.runs} WHERE session_id = %s "
        "ORDER BY ended_at DESC, id DESC LIMIT %s",
        (key, limit),
    ).fetchall()
    return [_record(row) for row in rows]


def usage_by_session(conn: Conn, t: Tables, limit: int | None) -> list[tuple[str, SessionUsage]]:
    page = "" if limit is None else f"LIMIT {int(limit)}"
    rows = conn.execute(
        f"SELECT session_id, {_SUMS} FROM {t.runs} GROUP BY session_id "
        f"ORDER BY sum(total_tokens) DESC, session_id {page}"
    ).fetchall()
    return [
        (from_db_id(row[0]), usage_from_sums(row[1], row[2:-2], row[-2], row[-1])) for row in rows
    ]
