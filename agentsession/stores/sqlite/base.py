"""What the SQLite store's modules share: the writer locks of this process, row lookups.

A leaf module of the engine (it imports no other module of it but ``schema``), so that
``store``, ``history``, ``retention`` and ``jsonl`` can all import it at the top.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from .schema import SESSIONS

__all__ = ("file_lock", "session_key")

# Writers of this process queue on one lock per database file, taken before BEGIN
# IMMEDIATE and released after COMMIT: SQLite's busy handler, which sleeps 1, 2, 5 ... 100
# ms and favours no one, then only arbitrates between processes. Measured by the W3
# benchmark: p99 per turn from 55-80 ms down to about 7 ms with 8 writer threads.
_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def file_lock(path: Path) -> threading.Lock:
    """The lock this process's writers of the database at ``path`` queue on."""
    with _file_locks_guard:
        return _file_locks.setdefault(str(path), threading.Lock())


def _reset_file_locks() -> None:
    # A lock held by another thread at fork() would stay held in the child forever.
    global _file_locks_guard
    _file_locks.clear()
    _file_locks_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_file_locks)


def session_key(conn: sqlite3.Connection, session_id: str) -> int | None:
    """The sessions row id of ``session_id``, or ``None`` if it has no record."""
    row = conn.execute(f"SELECT id FROM {SESSIONS} WHERE session_id = ?", (session_id,)).fetchone()
    return None if row is None else int(row[0])
