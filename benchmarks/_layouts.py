"""Bulk-build large databases in each system's own on-disk layout (for W5).

Adding a million messages one call at a time would take most of the run, so W5 builds its
databases here: the system creates its own schema first (through its public API), then
rows go in with one ``executemany`` per table in one transaction, in the system's own
table layout. Messages are interleaved across sessions in time order, as a real server's
are, so one session's rows are spread over the file. Only the reads that W5 measures go
through each system's API.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from ._items import encoded_pool
from ._systems import SYSTEMS, db_path

__all__ = ("build", "session_name")

BASE = 1_700_000_000.0
STEP = 0.001  # seconds between two messages


def session_name(index: int) -> str:
    """The id of the ``index``-th session (the higher, the more recently active)."""
    return f"user-{index:06d}"


def _stamp(seconds: float) -> str:
    """SQLite's ``CURRENT_TIMESTAMP`` text for an epoch time (what the SDK stores)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _messages(sessions: int, per_session: int) -> Iterator[tuple[int, int, float, str]]:
    """(session index, seq from 1, time, JSON text), interleaved across sessions.

    Each session holds whole turns in order (a function call is followed by its output),
    as the W1-W3 sessions do; sessions start at different turns so their texts differ.
    """
    pool = encoded_pool()  # turn t's two items are pool[2t] and pool[2t + 1]
    turns = len(pool) // 2
    k = 0
    for seq in range(1, per_session + 1):
        offset = (seq - 1) % 2
        for index in range(sessions):
            turn = ((seq - 1) // 2 + index) % turns
            yield index, seq, BASE + k * STEP, pool[2 * turn + offset]
            k += 1


def _last_time(index: int, sessions: int, per_session: int) -> float:
    return BASE + ((per_session - 1) * sessions + index) * STEP


def _create_schema(layout: str, directory: Path) -> None:
    system = next(s for s in SYSTEMS if s.layout == layout)

    async def create() -> None:
        handle = system.open(directory, "FULL")
        if system.is_async:
            await handle.get("__schema__", 1)
            await handle.aclose()
        else:
            handle.get("__schema__", 1)
            handle.close()

    asyncio.run(create())


def build(layout: str, directory: Path, sessions: int, per_session: int) -> float:
    """Create ``directory``'s database for ``layout`` holding ``sessions`` sessions of
    ``per_session`` messages each; return the seconds it took."""
    start = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    _create_schema(layout, directory)
    conn = sqlite3.connect(db_path(directory, layout), isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        _FILL[layout](conn, sessions, per_session)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - start


def _fill_agentsession(conn: sqlite3.Connection, sessions: int, per_session: int) -> None:
    from agentsession.stores.sqlite.schema import MESSAGES, SESSIONS

    conn.executemany(
        f"INSERT INTO {SESSIONS} (id, session_id, created_at, updated_at, message_count, "
        "last_seq) VALUES (?, ?, ?, ?, ?, ?)",
        (
            (i + 1, session_name(i), BASE + i * STEP, _last_time(i, sessions, per_session),
             per_session, per_session)
            for i in range(sessions)
        ),
    )  # fmt: skip
    conn.executemany(
        f"INSERT INTO {MESSAGES} (session, seq, created_at, message) VALUES (?, ?, ?, ?)",
        ((i + 1, seq, at, text) for i, seq, at, text in _messages(sessions, per_session)),
    )


def _fill_raw(conn: sqlite3.Connection, sessions: int, per_session: int) -> None:
    conn.executemany(
        "INSERT INTO sessions (id, session_id, updated_at) VALUES (?, ?, ?)",
        ((i + 1, session_name(i), _last_time(i, sessions, per_session)) for i in range(sessions)),
    )
    conn.executemany(
        "INSERT INTO messages (session, data) VALUES (?, ?)",
        ((i + 1, text) for i, _, _, text in _messages(sessions, per_session)),
    )


def _fill_sdk(conn: sqlite3.Connection, sessions: int, per_session: int) -> None:
    # SQLiteSession, AsyncSQLiteSession and SQLAlchemySession share these two tables
    # (their indexes differ, and each system created its own).
    conn.executemany(
        "INSERT INTO agent_sessions (session_id, created_at, updated_at) VALUES (?, ?, ?)",
        (
            (session_name(i), _stamp(BASE + i * STEP),
             _stamp(_last_time(i, sessions, per_session)))
            for i in range(sessions)
        ),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO agent_messages (session_id, message_data, created_at) VALUES (?, ?, ?)",
        (
            (session_name(i), text, _stamp(at))
            for i, _, at, text in _messages(sessions, per_session)
        ),
    )


_FILL = {
    "agentsession": _fill_agentsession,
    "raw": _fill_raw,
    "sdk": _fill_sdk,
    "sqlalchemy": _fill_sdk,
}
