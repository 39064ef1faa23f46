"""``SQLiteKeyFile``: wrapped data keys in a small SQLite file of their own.

The default key store of an encrypted ``SQLiteStore`` is ``<database>.keys`` beside the
database. It is its own file so that backups of the messages and of the keys are apart
(see ``docs/encryption.md``): created readable by its owner only (0600), written in
rollback-journal transactions (every change is atomic and durable: ``synchronous=FULL``,
and no ``-wal`` file keeps old pages around), with ``secure_delete`` on, so a deleted
(shredded) data key is overwritten in the file rather than left in a free page.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ...exceptions import SchemaError, StoreClosed, StoreError

__all__ = ("SQLiteKeyFile",)

T = TypeVar("T")

_TABLE = "agentsession_data_keys"


class SQLiteKeyFile:
    """A ``protocol.KeyStore`` in a SQLite file (created if missing, mode 0600).

    Args:
        path: the key file; keep it out of the database's backups, or back it up
            apart (see ``docs/encryption.md``).
        busy_timeout: seconds a write waits for another process's write.
        create: create the file if it is missing (else that is a ``SchemaError``).

    Raises:
        TypeError: ``path`` is not a str or path.
        SchemaError: the file is missing and ``create`` is false.
        StoreError: the file cannot be created or opened as a key file.

    Thread safety: every method may be called from any thread (one connection, taken in
    turns); processes share the file through SQLite's locks.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, create: bool = True
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        self.path = Path(path).absolute()
        if not create and not self.path.exists():
            raise SchemaError(
                f"the key file {self.path} is missing: without it no session can be "
                "decrypted (restore it from its backup, or name it with SQLiteKeyFile)"
            )
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        self._run(lambda conn: None)  # create or check the file now, not on first use

    def __repr__(self) -> str:
        return f"SQLiteKeyFile({str(self.path)!r})"

    def _open(self) -> sqlite3.Connection:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot create key file {self.path}: {exc.strerror}") from exc
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} "
                "(session_id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID"
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open key file {self.path}: {exc}") from exc
        return conn

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._closed:
                raise StoreClosed(f"{self!r} is closed")
            if self._conn is None or self._pid != os.getpid():
                # A connection inherited through fork() is the parent's: open our own.
                self._conn, self._pid = self._open(), os.getpid()
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                raise StoreError(f"key file {self.path}: {exc}") from exc

    def get(self, session_ids: list[str]) -> dict[str, str]:
        if not session_ids:
            return {}
        marks = ", ".join("?" * len(session_ids))
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT session_id, record FROM {_TABLE} WHERE session_id IN ({marks})",
                session_ids,
            ).fetchall()
        )
        return dict(rows)

    def add(self, session_id: str, record: str) -> str:
        def work(conn: sqlite3.Connection) -> str:
            conn.execute(
                f"INSERT INTO {_TABLE} (session_id, record) VALUES (?, ?) "
                "ON CONFLICT (session_id) DO NOTHING",
                (session_id, record),
            )
            row = conn.execute(
                f"SELECT record FROM {_TABLE} WHERE session_id = ?", (session_id,)
            ).fetchone()
            return str(row[0])

        return self._run(work)

    def replace(self, session_id: str, old: str, new: str) -> bool:
        cursor = self._run(
            lambda conn: conn.execute(
                f"UPDATE {_TABLE} SET record = ? WHERE session_id = ? AND record = ?",
                (new, session_id, old),
            )
        )
        return cursor.rowcount == 1

    def delete(self, session_id: str) -> None:
        self._run(
            lambda conn: conn.execute(f"DELETE FROM {_TABLE} WHERE session_id = ?", (session_id,))
        )

    def page(self, cursor: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        rows: list[tuple[str, str]] = self._run(
            lambda conn: conn.execute(
                f"SELECT session_id, record FROM {_TABLE} WHERE session_id > ? "
                "ORDER BY session_id LIMIT ?",
                ("" if cursor is None else cursor, limit),
            ).fetchall()
        )
        return rows, (rows[-1][0] if len(rows) == limit else None)

    def count(self) -> int:
        return int(
            self._run(lambda conn: conn.execute(f"SELECT count(*) FROM {_TABLE}").fetchone())[0]
        )

    def close(self) -> None:
        """Close the file. Later calls raise ``StoreClosed``; closing twice is allowed."""
        with self._lock:
            self._closed = True
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
