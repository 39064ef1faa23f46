"""The PostgreSQL schema, its numbered migrations, and the once-per-schema set-up.

Every table lives in one PostgreSQL schema of the caller's choosing (``public`` unless
told otherwise), so that several applications or test runs can share a database without
seeing each other's sessions. Set-up is safe when many app servers start at once: one
transaction takes a transaction-scoped advisory lock whose key is derived from the schema
name, creates the schema if it is missing, and applies, in order, the migrations not yet
recorded in ``agentsession_migrations`` (one row per migration: version, name,
applied_at). The others wait for the lock, then find nothing left to do. A schema whose
recorded version is newer than this code knows is refused with ``SchemaError``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from ...exceptions import SchemaError

__all__ = (
    "ARCHIVED",
    "COMPACTIONS",
    "ENCRYPTION",
    "KEYS",
    "KEYS_TABLE",
    "LOCKS",
    "MESSAGES",
    "MIGRATIONS",
    "RUNS",
    "SCHEMA_VERSION",
    "SESSIONS",
    "VERSIONS",
    "Tables",
    "check_schema_name",
    "ensure_schema",
    "setup_lock_key",
)

SESSIONS = "agentsession_sessions"
MESSAGES = "agentsession_messages"
#: Run leases: which run holds a session (see the runner's no-interleaving lock).
LOCKS = "agentsession_locks"
#: The usage ledger: one row per run (``stores.runs.COLUMNS``), keyed by session id.
RUNS = "agentsession_runs"
#: Compactions in force (see ``agentsession.compaction``), one row each, keyed by the
#: sessions row; the messages each archived are in ``ARCHIVED``, apart from ``MESSAGES``
#: so that no read of a session's history ever meets them.
COMPACTIONS = "agentsession_compactions"
ARCHIVED = "agentsession_archived"
#: One row per applied migration.
VERSIONS = "agentsession_migrations"
#: The wrapped data keys of an encrypted store (the default ``PostgresKeyTable``).
KEYS = "agentsession_keys"
#: One row when the schema's sessions are encrypted (see ``stores.encrypted``).
ENCRYPTION = "agentsession_encryption"

#: The key table's definition (``{keys}``: its qualified name); ``PostgresKeyTable``
#: creates it in a schema of its own with the same text.
KEYS_TABLE = """CREATE TABLE IF NOT EXISTS {keys} (
    session_id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
)"""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def check_schema_name(schema: Any) -> str:
    """Return ``schema`` if it is a plain SQL identifier PostgreSQL lets users create.

    Plain means letters, digits and underscores, not starting with a digit, at most 63
    characters (PostgreSQL's limit); names starting with ``pg_`` are PostgreSQL's own.
    The name is used quoted, so its case is kept.

    Raises:
        TypeError: not a str.
        ValueError: not a plain identifier, or reserved.
    """
    if not isinstance(schema, str):
        raise TypeError(f"schema must be a str, not {type(schema).__name__}: {schema!r}")
    if not _IDENTIFIER.match(schema):
        raise ValueError(
            "schema must be a plain identifier (letters, digits and _, not starting with a "
            f"digit, at most 63 characters), got {schema!r}"
        )
    if schema.lower().startswith("pg_"):
        raise ValueError(f"schema names starting with pg_ are reserved by PostgreSQL: {schema!r}")
    return schema


class Tables:
    """The quoted, schema-qualified names of agentsession's tables, for SQL text."""

    __slots__ = (
        "archived",
        "compactions",
        "encryption",
        "keys",
        "locks",
        "messages",
        "name",
        "quoted",
        "runs",
        "sessions",
        "versions",
    )

    def __init__(self, schema: str) -> None:
        self.name = check_schema_name(schema)
        # A checked plain identifier needs no escaping inside double quotes.
        self.quoted = f'"{schema}"'
        self.sessions = f"{self.quoted}.{SESSIONS}"
        self.messages = f"{self.quoted}.{MESSAGES}"
        self.locks = f"{self.quoted}.{LOCKS}"
        self.runs = f"{self.quoted}.{RUNS}"
        self.versions = f"{self.quoted}.{VERSIONS}"
        self.keys = f"{self.quoted}.{KEYS}"
        self.encryption = f"{self.quoted}.{ENCRYPTION}"
        self.compactions = f"{self.quoted}.{COMPACTIONS}"
        self.archived = f"{self.quoted}.{ARCHIVED}"


@dataclass(frozen=True)
class Migration:
    """One schema change: SQL statements with ``{sessions}`` etc. for the table names."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "0001_sessions_messages_locks",
        (
            # Sessions get a small integer key so that the messages index stays narrow
            # however long session ids are. Ids compare bytewise (COLLATE "C"): equality
            # is all they need, and it is the fastest. message_count = last_seq always:
            # positions are dense, 1..message_count. Times are Unix seconds from the
            # server's clock, so app servers with skewed clocks still agree on order.
            """CREATE TABLE {sessions} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                session_id text COLLATE "C" NOT NULL UNIQUE,
                created_at double precision NOT NULL,
                updated_at double precision NOT NULL,
                message_count integer NOT NULL DEFAULT 0,
                last_seq integer NOT NULL DEFAULT 0,
                metadata jsonb NOT NULL DEFAULT '{{}}'
            )""",
            # Listing and keyset paging: newest activity first, ties by id.
            "CREATE INDEX agentsession_sessions_recent ON {sessions} (updated_at DESC, id DESC)",
            # list_sessions(metadata=...) is one containment test (@>) this index answers.
            "CREATE INDEX agentsession_sessions_metadata ON {sessions} "
            "USING gin (metadata jsonb_path_ops)",
            # The exact JSON text of each message (text, not jsonb: it reads back byte for
            # byte), and its searchable words, indexed by PostgreSQL's own full-text search
            # with the 'simple' configuration (lower-cased words, no stemming, no stop
            # words: any language). The primary key makes "newest N" an index range scan.
            """CREATE TABLE {messages} (
                session bigint NOT NULL,
                seq integer NOT NULL,
                created_at double precision NOT NULL,
                message text NOT NULL,
                search_text text NOT NULL DEFAULT '',
                search_vector tsvector GENERATED ALWAYS AS
                    (to_tsvector('simple'::regconfig, search_text)) STORED,
                PRIMARY KEY (session, seq)
            )""",
            "CREATE INDEX agentsession_messages_search ON {messages} USING gin (search_vector)",
            """CREATE TABLE {locks} (
                session_id text COLLATE "C" PRIMARY KEY,
                owner text NOT NULL,
                expires_at double precision NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "0004_usage_ledger",
        (
            # Keyed by the session id's text, not the sessions row: a run rolled back on a
            # new session records what it spent without creating the session. Times are
            # the runner's (Unix seconds). (session_id, ended_at) serves "newest runs
            # first" and the per-session sums.
            """CREATE TABLE {runs} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                run_id text NOT NULL,
                session_id text COLLATE "C" NOT NULL,
                started_at double precision NOT NULL,
                ended_at double precision NOT NULL,
                agent text NOT NULL,
                model text NOT NULL,
                requests bigint NOT NULL,
                input_tokens bigint NOT NULL,
                output_tokens bigint NOT NULL,
                total_tokens bigint NOT NULL,
                cached_input_tokens bigint NOT NULL,
                reasoning_tokens bigint NOT NULL,
                items_added bigint NOT NULL,
                outcome text NOT NULL
            )""",
            "CREATE INDEX agentsession_runs_session ON {runs} (session_id, ended_at)",
        ),
    ),
    Migration(
        5,
        "0005_encryption",
        (
            # Encryption at rest (stores.encrypted): the marker row, and the default home
            # of the wrapped data keys (a user may keep them elsewhere: PostgresKeyTable).
            "CREATE TABLE {encryption} (id integer PRIMARY KEY CHECK (id = 1), "
            "since double precision NOT NULL)",
            KEYS_TABLE,
        ),
    ),
    Migration(
        6,
        "0006_compaction",
        (
            # Archived messages live in a table of their own: the messages table, its
            # indexes and every read of it stay as they were, and a compaction moves rows
            # (message text, time and search words) rather than rewriting them.
            """CREATE TABLE {compactions} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                session bigint NOT NULL,
                record text NOT NULL,
                summary text NOT NULL
            )""",
            "CREATE INDEX agentsession_compactions_session ON {compactions} (session, id)",
            """CREATE TABLE {archived} (
                compaction bigint NOT NULL,
                seq integer NOT NULL,
                created_at double precision NOT NULL,
                message text NOT NULL,
                search_text text NOT NULL,
                PRIMARY KEY (compaction, seq)
            )""",
        ),
    ),
)

#: The newest schema version this code knows (the last migration's).
SCHEMA_VERSION = MIGRATIONS[-1].version
_KNOWN = frozenset(migration.version for migration in MIGRATIONS)


def setup_lock_key(schema: str) -> int:
    """The advisory lock key the set-up of ``schema`` takes: the same in every process."""
    digest = hashlib.blake2b(f"agentsession set-up {schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _check_not_newer(version: int | None, tables: Tables) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaError(
            f"schema {tables.name!r} was set up by a newer agentsession (schema version "
            f"{version}; this version knows up to {SCHEMA_VERSION}): upgrade agentsession "
            "to use it"
        )


def _recorded_versions(conn: psycopg.Connection[Any], tables: Tables) -> set[int] | None:
    """The applied migrations, or ``None`` when the schema has no version table."""
    encoding, found = conn.execute(
        "SELECT current_setting('server_encoding'), to_regclass(%s) IS NOT NULL",
        (tables.versions,),
    ).fetchone() or ("", False)
    if encoding != "UTF8":
        raise SchemaError(
            f"agentsession needs a UTF8 database; this one is encoded {encoding} "
            "(create it with ENCODING 'UTF8')"
        )
    if not found:
        return None
    row = conn.execute(f"SELECT array_agg(version) FROM {tables.versions}").fetchone()
    return set() if row is None or row[0] is None else {int(version) for version in row[0]}


def ensure_schema(conn: psycopg.Connection[Any], tables: Tables, timeout: float) -> None:
    """Create or migrate agentsession's tables in ``tables.name``; a no-op when current.

    Args:
        conn: an idle connection (autocommit or not); it is idle again on return.
        tables: the schema's table names.
        timeout: seconds to wait for another process's set-up (the advisory lock) and
            for the locks the migrations need.

    Raises:
        SchemaError: the schema was set up by a newer version, the database is not
            UTF8, another process held the set-up lock longer than ``timeout``, or this
            role may not create the schema or its tables.
        psycopg.Error: any other failure (the caller maps it).
    """
    versions = _recorded_versions(conn, tables)
    _check_not_newer(max(versions, default=None) if versions else None, tables)
    # Current when every known migration is applied: the newest alone is not enough
    # (a migration numbered below the newest may have been added later).
    if versions is not None and versions >= _KNOWN:
        return
    try:
        with conn.transaction():
            _migrate(conn, tables, timeout)
        conn.commit()  # ends the implicit transaction of a connection not in autocommit
    except psycopg.errors.LockNotAvailable as exc:
        raise SchemaError(
            f"another process held the set-up lock of schema {tables.name!r} for more than "
            f"{timeout} s while creating or migrating it"
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SchemaError(
            f"cannot create agentsession's tables in schema {tables.name!r}: {exc} "
            "(grant this role CREATE on the database or the schema, or let an owner run "
            "the set-up once)"
        ) from exc


def _migrate(conn: psycopg.Connection[Any], tables: Tables, timeout: float) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(timeout * 1000)}ms",))
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (setup_lock_key(tables.name),))
    # Checked before creating: CREATE SCHEMA IF NOT EXISTS needs the database's CREATE
    # privilege even when the schema exists, and an existing schema must be usable
    # without it.
    if not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (tables.name,)).fetchone():
        conn.execute(f"CREATE SCHEMA {tables.quoted}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {tables.versions} ("
        "version integer PRIMARY KEY, name text NOT NULL UNIQUE, "
        "applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    applied = {row[0] for row in conn.execute(f"SELECT version FROM {tables.versions}")}
    _check_not_newer(max(applied, default=None), tables)
    names = {
        "sessions": tables.sessions,
        "messages": tables.messages,
        "locks": tables.locks,
        "runs": tables.runs,
        "keys": tables.keys,
        "encryption": tables.encryption,
        "compactions": tables.compactions,
        "archived": tables.archived,
    }
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        for statement in migration.statements:
            conn.execute(statement.format(**names))
        conn.execute(
            f"INSERT INTO {tables.versions} (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )
