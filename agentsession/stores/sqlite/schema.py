"""The SQLite schema, its migrations, and the once-per-database set-up.

The schema version is kept twice: ``PRAGMA user_version`` (one integer, read on every
open without a lock) and sqlite-utils' ``_sqlite_migrations`` table (which migration ran
when). Set-up takes a ``filelock`` beside the database file so that many processes
opening a new database at once migrate it exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import filelock

from ..._serialize import message_text
from ...exceptions import SchemaError

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = (
    "ARCHIVED",
    "COMPACTIONS",
    "ENCRYPTION",
    "FTS_STATE",
    "LOCKS",
    "MESSAGES",
    "MESSAGES_FTS",
    "RUNS",
    "SCHEMA_VERSION",
    "SESSIONS",
    "check_schema",
    "ensure_schema",
    "lock_path",
)

SESSIONS = "agentsession_sessions"
MESSAGES = "agentsession_messages"
#: Run leases: which run holds a session (see the runner's no-interleaving lock).
LOCKS = "agentsession_locks"
#: The full-text index over ``MESSAGES.text``, caught up before searches (see ``fts``).
MESSAGES_FTS = f"{MESSAGES}_fts"
#: One row: ``last_indexed``, the largest message id the full-text index is caught up to.
FTS_STATE = "agentsession_fts_state"
#: The usage ledger: one row per run (``stores.runs.COLUMNS``), keyed by session id.
RUNS = "agentsession_runs"

#: One row when the database is encrypted (see ``stores.encrypted``): it is then never
#: opened without its keys, and a database with plaintext sessions never with them.
ENCRYPTION = "agentsession_encryption"

#: Compactions (see ``agentsession.compaction``): one row per compaction in force, keyed by
#: the sessions row; the messages it archived are in ``ARCHIVED``, apart from
#: ``MESSAGES`` so that no read of a session's history ever meets them.
COMPACTIONS = "agentsession_compactions"
ARCHIVED = "agentsession_archived"

#: Bumped with every migration added below (to the number of the newest).
SCHEMA_VERSION = 7

F = TypeVar("F", bound=Callable[..., Any])


class _Migrations:
    """sqlite-utils' ``Migrations``, declared the same way, built only when applied.

    Importing sqlite-utils (with numpy, when installed) takes a tenth of a second that
    opening a database whose schema is current never needs, nor does a command-line
    start; so migrations are registered here and handed to sqlite-utils in ``apply``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._registered: list[tuple[str | None, Callable[..., Any], bool]] = []

    def __call__(self, *, name: str | None = None, transactional: bool = True) -> Callable[[F], F]:
        def register(func: F) -> F:
            self._registered.append((name, func, transactional))
            return func

        return register

    def pending_names(self, conn: sqlite3.Connection) -> list[str]:
        """The names of the migrations ``conn``'s database has not had, in order: what
        ``Migrations.pending`` tells, read with one query and no sqlite-utils."""
        try:
            applied = {
                name
                for (name,) in conn.execute(
                    "SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (self.name,)
                )
            }
        except sqlite3.OperationalError:  # no such table: nothing was applied
            applied = set()
        names = [name or func.__name__ for name, func, _ in self._registered]
        return [name for name in names if name not in applied]

    def __getattr__(self, name: str) -> Any:
        """Anything else of sqlite-utils' ``Migrations`` (``apply``, ``pending``...), on
        one holding these migrations."""
        if name.startswith("_"):  # never for private names (copy, pickle, __init__)
            raise AttributeError(name)
        from sqlite_utils.migrations import Migrations

        real = Migrations(self.name)
        for migration, func, transactional in self._registered:
            real(name=migration, transactional=transactional)(func)
        return getattr(real, name)


migrations = _Migrations("agentsession")


@migrations(name="0001_sessions_and_messages")
def _create_tables(db: Database) -> None:
    # Sessions get a small integer key so that the messages index stays narrow however
    # long session ids are; (session, seq) makes "newest N of one session" an index
    # range scan whatever the size of the file. seq is dense: 1..message_count.
    db[SESSIONS].create(  # type: ignore[union-attr]
        {
            "id": int,
            "session_id": str,
            "created_at": float,
            "updated_at": float,
            "message_count": int,
            "last_seq": int,
        },
        pk="id",
        not_null={
            "session_id",
            "created_at",
            "updated_at",
            "message_count",
            "last_seq",
        },
    )
    db[SESSIONS].create_index(["session_id"], unique=True)  # type: ignore[union-attr]
    db[SESSIONS].create_index(["updated_at"])  # type: ignore[union-attr]
    db[MESSAGES].create(  # type: ignore[union-attr]
        {
            "id": int,
            "session": int,
            "seq": int,
            "created_at": float,
            "message": str,
        },
        pk="id",
        not_null={"session", "seq", "created_at", "message"},
    )
    db[MESSAGES].create_index(["session", "seq"], unique=True)  # type: ignore[union-attr]


@migrations(name="0002_metadata_search_locks")
def _metadata_search_locks(db: Database) -> None:
    # Sessions carry a JSON object of the user's own (user id, title, tags).
    db[SESSIONS].add_column("metadata", str, not_null_default="{}")  # type: ignore[union-attr]
    # The searchable text of each message (see _serialize.message_text), indexed by FTS5;
    # sqlite-utils' triggers keep the index in step with inserts, updates and deletes.
    db[MESSAGES].add_column("text", str, not_null_default="")  # type: ignore[union-attr]
    rows = db.execute(f"SELECT id, message FROM {MESSAGES}").fetchall()
    db.conn.executemany(
        f"UPDATE {MESSAGES} SET text = ? WHERE id = ?",
        [(text_of_stored(message), row_id) for row_id, message in rows],
    )
    db[MESSAGES].enable_fts(["text"], fts_version="FTS5", create_triggers=True)  # type: ignore[union-attr]
    db[LOCKS].create(  # type: ignore[union-attr]
        {"session_id": str, "owner": str, "expires_at": float},
        pk="session_id",
        not_null={"owner", "expires_at"},
    )


@migrations(name="0003_fts_off_the_write_path")
def _fts_off_the_write_path(db: Database) -> None:
    # Adds no longer touch the full-text index: fts.catch_up indexes rows with
    # id > last_indexed before each search. Every row so far was indexed by the triggers.
    for trigger in ("ai", "au", "ad"):
        db.execute(f"DROP TRIGGER IF EXISTS {MESSAGES}_{trigger}")
    db.execute(
        f"CREATE TABLE {FTS_STATE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "last_indexed INTEGER NOT NULL)"
    )
    db.execute(
        f"INSERT INTO {FTS_STATE} (id, last_indexed) "
        f"VALUES (1, (SELECT coalesce(max(id), 0) FROM {MESSAGES}))"
    )
    # Deleting an indexed row takes it out of the index; last_indexed then drops to the
    # largest id left, so that no new row (id = max(id) + 1) counts as indexed already.
    db.execute(
        f"CREATE TRIGGER {MESSAGES}_ad AFTER DELETE ON {MESSAGES} BEGIN "
        f"INSERT INTO {MESSAGES_FTS} ({MESSAGES_FTS}, rowid, text) "
        f"SELECT 'delete', old.id, old.text WHERE old.id <= "
        f"(SELECT last_indexed FROM {FTS_STATE}); "
        f"UPDATE {FTS_STATE} SET last_indexed = (SELECT coalesce(max(id), 0) FROM {MESSAGES}) "
        f"WHERE last_indexed > (SELECT coalesce(max(id), 0) FROM {MESSAGES}); "
        "END"
    )


@migrations(name="0004_usage_ledger")
def _usage_ledger(db: Database) -> None:
    # Keyed by the session id's text, not the sessions row: a run rolled back on a new
    # session records what it spent without creating the session. (session_id, ended_at)
    # serves both "newest runs first" and the per-session sums.
    db.execute(
        f"CREATE TABLE {RUNS} (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
        "session_id TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL NOT NULL, "
        "agent TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL, "
        "input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, "
        "total_tokens INTEGER NOT NULL, cached_input_tokens INTEGER NOT NULL, "
        "reasoning_tokens INTEGER NOT NULL, items_added INTEGER NOT NULL, "
        "outcome TEXT NOT NULL)"
    )
    db.execute(f"CREATE INDEX {RUNS}_session ON {RUNS} (session_id, ended_at)")


@migrations(name="0005_encryption")
def _encryption(db: Database) -> None:
    # The wrapped data keys live in a key file of their own, not here (see sqlite.keys).
    db.execute(
        f"CREATE TABLE {ENCRYPTION} (id INTEGER PRIMARY KEY CHECK (id = 1), since REAL NOT NULL)"
    )


@migrations(name="0006_compaction")
def _compaction(db: Database) -> None:
    # Archived messages live in a table of their own: the messages table, its index and
    # every read of it stay as they were, and a compaction moves rows, never rewrites them.
    db.execute(
        f"CREATE TABLE {COMPACTIONS} (id INTEGER PRIMARY KEY, session INTEGER NOT NULL, "
        "record TEXT NOT NULL, summary TEXT NOT NULL)"
    )
    db.execute(f"CREATE INDEX {COMPACTIONS}_session ON {COMPACTIONS} (session, id)")
    db.execute(
        f"CREATE TABLE {ARCHIVED} (id INTEGER PRIMARY KEY, compaction INTEGER NOT NULL, "
        "seq INTEGER NOT NULL, created_at REAL NOT NULL, message TEXT NOT NULL)"
    )
    db.execute(f"CREATE INDEX {ARCHIVED}_compaction ON {ARCHIVED} (compaction, seq)")


@migrations(name="0007_history_generation")
def _history_generation(db: Database) -> None:
    # A session's generation changes with every change to its history but an append, so
    # that a kept copy of the history (stores.history_cache) can tell "only appended to
    # since" from anything else. Triggers, so that no writer (another version's, an
    # import, a prune) can forget it. A new session row starts at a random generation
    # (shifted, so that adding one never overflows):
    # a row id SQLite hands out again, after a session is deleted, must not look unchanged.
    # An update that changes a message's search text alone (fts.catch_up) changes no
    # history.
    db[SESSIONS].add_column("generation", int, not_null_default=0)  # type: ignore[union-attr]
    db.execute(
        f"CREATE TRIGGER {SESSIONS}_generation_ai AFTER INSERT ON {SESSIONS} BEGIN "
        f"UPDATE {SESSIONS} SET generation = random() >> 2 WHERE id = new.id; END"
    )
    db.execute(
        f"CREATE TRIGGER {MESSAGES}_generation_ad AFTER DELETE ON {MESSAGES} BEGIN "
        f"UPDATE {SESSIONS} SET generation = generation + 1 WHERE id = old.session; END"
    )
    db.execute(
        f"CREATE TRIGGER {MESSAGES}_generation_au AFTER UPDATE ON {MESSAGES} "
        "WHEN old.text IS new.text OR old.message IS NOT new.message "
        "OR old.seq IS NOT new.seq OR old.session IS NOT new.session BEGIN "
        f"UPDATE {SESSIONS} SET generation = generation + 1 "
        "WHERE id IN (old.session, new.session); END"
    )
    db.execute(f"UPDATE {SESSIONS} SET generation = random() >> 2")


def text_of_stored(message: str) -> str:
    """The searchable text of a stored JSON message ('' if it is not readable)."""
    try:
        return message_text(json.loads(message))
    except (TypeError, ValueError):
        return ""


def lock_path(database: Path) -> Path:
    """The file the set-up lock is taken on, beside the database."""
    return database.with_name(database.name + ".lock")


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_not_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{where} was written by a newer agentsession (schema version {version}; "
            f"this version reads up to {SCHEMA_VERSION}): upgrade agentsession to use it"
        )


def _refuse_a_file_of_another_application(conn: sqlite3.Connection, where: str) -> None:
    """Refuse a database that holds tables, none of them agentsession's.

    Raises:
        SchemaError: naming a few of its tables and ``shared_file=True``.
    """
    names = sorted(
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
        if not name.startswith("agentsession_") and name != "_sqlite_migrations"
    )
    if names:
        listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise SchemaError(
            f"{where} is not an agentsession database: it holds tables of another "
            f"application ({listed}); agentsession adds its tables to such a file only "
            "when told to share it: SQLiteStore(path, shared_file=True)"
        )


def _current(conn: sqlite3.Connection, version: int) -> bool:
    """Whether the schema is current: stamped ``SCHEMA_VERSION`` and every migration of
    this code applied. The stamp alone is not enough: a migration numbered below the
    newest may have been added later (a file stamped 5 by a version without 0004)."""
    if version != SCHEMA_VERSION:
        return False
    return not migrations.pending_names(conn)


def _migrate(conn: sqlite3.Connection, where: str, wal: bool, shared_file: bool) -> None:
    version = _user_version(conn)
    _check_not_newer(version, where)
    if _current(conn, version):
        return
    if version == 0 and not shared_file:
        _refuse_a_file_of_another_application(conn, where)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    # One transaction for every migration, sqlite-utils' own bookkeeping table and the
    # version stamp: a process killed part-way leaves the file as it was.
    conn.execute("BEGIN IMMEDIATE")
    try:
        from sqlite_utils import Database  # only here: see _Migrations

        migrations.apply(Database(conn, execute_plugins=False))
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def check_schema(conn: sqlite3.Connection, where: str) -> None:
    """For a read-only store: refuse a schema this version cannot read without a change.

    Raises:
        SchemaError: written by a newer version, or older than this one (migrating it
            needs a store that may write).
    """
    version = _user_version(conn)
    _check_not_newer(version, where)
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{where} has schema version {version}, not {SCHEMA_VERSION}: open it once "
            "with write access to migrate it"
        )


def ensure_schema(
    conn: sqlite3.Connection, database: Path | None, timeout: float, shared_file: bool = False
) -> None:
    """Create or migrate the schema once, then return; a no-op when it is current.

    Args:
        conn: an autocommit connection to the database.
        database: the database file, or ``None`` for a private in-memory database
            (no other process can see it, so no lock is taken).
        timeout: seconds to wait for another process's set-up to finish.
        shared_file: add agentsession's tables to a database that holds tables of
            another application; refused without it.

    Raises:
        SchemaError: the database was written by a newer schema version, holds another
            application's tables and not agentsession's (without ``shared_file``), or
            another process held the set-up lock longer than ``timeout``.
        sqlite3.Error: the driver failed (the caller maps it).
    """
    where = str(database) if database is not None else "the in-memory database"
    version = _user_version(conn)
    _check_not_newer(version, where)
    if _current(conn, version):
        return
    if database is None:
        _migrate(conn, where, wal=False, shared_file=shared_file)
        return
    lock = filelock.FileLock(str(lock_path(database)), timeout=timeout, mode=0o600)
    try:
        with lock:
            _migrate(conn, where, wal=True, shared_file=shared_file)
    except filelock.Timeout as exc:
        raise SchemaError(
            f"another process held the set-up lock {lock.lock_file} for more than "
            f"{timeout} s while creating or migrating {where}"
        ) from exc
