"""Where the command line keeps its sessions, and opening them without surprises.

A database is either a SQLite file or a server named by a URL:

- a path (``sessions.db``, ``~/chats.db``, ``C:\\data\\sessions.db``): a SQLite file;
- ``postgresql://`` or ``postgres://``: PostgreSQL (``PostgresStore``, schema ``public``);
- ``redis://``, ``rediss://`` or ``unix://``: Redis (``RedisStore``, key prefix
  ``agentsession``).

The default database is ``$XDG_DATA_HOME/agentsession/sessions.db`` (``XDG_DATA_HOME``
defaults to ``~/.local/share``; on Windows ``%LOCALAPPDATA%`` is used); ``--db`` and the
``AGENTSESSION_DB`` environment variable override it. Inspecting commands never create a
database file; every command refuses a file that is not an agentsession database rather
than adding tables to it. A URL is shown with its password masked (``str(DatabaseUrl)``).

An encrypted database (``docs/encryption.md``) is opened with the master key in
``AGENTSESSION_KEY`` (base64 or hex), and any older keys still in use in
``AGENTSESSION_OLD_KEYS`` (separated by commas), for every command alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias
from urllib.parse import unquote, urlsplit

import click
import sqlite_utils

from ..encryption import Encryption
from ..exceptions import MissingDependencyError, StoreError
from ..memory import PostgresSessionMemory, RedisSessionMemory, SQLiteSessionMemory, StoreMemory
from ..protocol import Store
from ..stores.sqlite import SQLiteStore
from ..stores.sqlite.schema import SESSIONS

__all__ = (
    "DB_ENV",
    "KEY_ENV",
    "OLD_KEYS_ENV",
    "SCHEMES",
    "CliStore",
    "Database",
    "DatabaseUrl",
    "cli_words",
    "create_store",
    "data_dir",
    "db_argument",
    "default_db",
    "encryption_from_env",
    "is_default",
    "open_memory",
    "open_store",
    "parse_db",
    "redact",
    "resolve_db",
)

#: Environment variable naming the database (a path or a URL), overridden by ``--db``.
DB_ENV = "AGENTSESSION_DB"

#: The master key of an encrypted database (base64 or hex text of 32 bytes).
KEY_ENV = "AGENTSESSION_KEY"
#: Older master keys, separated by commas, that still unwrap data keys until
#: ``agentsession rotate-keys`` has re-wrapped them under ``AGENTSESSION_KEY``.
OLD_KEYS_ENV = "AGENTSESSION_OLD_KEYS"

#: The URL schemes ``--db`` accepts, and the engine each one opens.
SCHEMES: Mapping[str, str] = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
}

#: ``scheme://`` at the start of a ``--db`` value. A one-letter scheme is a Windows
#: drive (``C://data``), so a scheme has two letters or more.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")

#: A password in a URL's user info (``//user:secret@``) or query (``password=secret``).
_USERINFO_PASSWORD = re.compile(r"(//[^/@:\s]*:)[^/@\s]*(@)")
_QUERY_PASSWORD = re.compile(r"(\bpassword=)[^&\s#]*", re.IGNORECASE)

_MASK = "***"


def redact(text: str) -> str:
    """``text`` with every URL password in it replaced by ``***``.

    Covers ``scheme://user:secret@host`` and ``password=secret`` query parameters, so
    that a driver's error message quoting the URL it was given prints no secret.
    """
    text = _USERINFO_PASSWORD.sub(rf"\g<1>{_MASK}\g<2>", text)
    return _QUERY_PASSWORD.sub(rf"\g<1>{_MASK}", text)


@dataclass(frozen=True, repr=False)
class DatabaseUrl:
    """A database server named by a URL, as ``--db`` or ``AGENTSESSION_DB`` gave it.

    ``str()`` and ``repr()`` mask the password (``postgresql://user:***@host/db``), so a
    ``DatabaseUrl`` can be printed in any message; ``url`` is the URL itself, with the
    password, for the driver (and for a command the user is told to type again).

    Attributes:
        url: the URL, its scheme lower-cased.
        engine: ``"postgres"`` or ``"redis"``.
    """

    url: str
    engine: str

    @property
    def masked(self) -> str:
        """The URL with any password (in the user info or the query) replaced by ``***``."""
        try:
            parts = urlsplit(self.url)
        except ValueError:  # not parseable (an unclosed "[", say): mask by pattern
            return redact(self.url)
        netloc = parts.netloc
        userinfo, at, host = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:{_MASK}@{host}"
        masked = f"{parts.scheme}://{netloc}{parts.path}"
        if parts.query:
            masked += "?" + "&".join(
                f"{key}={_MASK}" if unquote(key).lower() == "password" else f"{key}{sep}{value}"
                for key, sep, value in (item.partition("=") for item in parts.query.split("&"))
            )
        if parts.fragment:
            masked += "#" + parts.fragment
        return masked

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.masked!r})"


#: What a command works on: a SQLite file, or a server.
Database: TypeAlias = Path | DatabaseUrl


class CliStore(Store, Protocol):
    """What the commands need of a store: every ``Store`` method, as a context manager.

    ``SQLiteStore``, ``PostgresStore`` and ``RedisStore`` all are one.
    """

    def __enter__(self) -> CliStore: ...

    def __exit__(self, *exc_info: object) -> None: ...


def cli_words(message: str) -> str:
    """A store's message in the command line's words (``AGENTSESSION_KEY``, not
    ``encryption=``)."""
    return message.replace("encryption=Encryption(key)", f"{KEY_ENV} set to its key").replace(
        "encryption=", f"{KEY_ENV} set"
    )


def encryption_from_env(env: Mapping[str, str] | None = None) -> Encryption | None:
    """The ``Encryption`` of ``AGENTSESSION_KEY`` and ``AGENTSESSION_OLD_KEYS``, if set.

    Raises:
        click.UsageError: a key that is not 32 bytes of base64 or hex, or old keys
            without a primary one (the message names the variable, never a key).
        click.ClickException: the ``cryptography`` package is missing (the message has
            the ``pip install`` line).
    """
    env = os.environ if env is None else env
    primary = env.get(KEY_ENV, "").strip()
    old = [key.strip() for key in env.get(OLD_KEYS_ENV, "").split(",") if key.strip()]
    if not primary:
        if old:
            raise click.UsageError(f"{OLD_KEYS_ENV} is set but {KEY_ENV} is not")
        return None
    keys = {KEY_ENV: primary, **{f"{OLD_KEYS_ENV}[{i}]": key for i, key in enumerate(old)}}
    try:
        return Encryption(keys, primary=KEY_ENV)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    except MissingDependencyError as exc:
        raise click.ClickException(str(exc)) from exc


def parse_db(text: str) -> Database:
    """``text`` (from ``--db`` or ``AGENTSESSION_DB``) as a file path or a server URL.

    Anything that does not start with ``scheme://`` is a path (``~`` expanded); a
    Windows path such as ``C:\\data\\sessions.db`` is a path.

    Raises:
        ValueError: a URL whose scheme is none of ``SCHEMES`` (the message lists them),
            or that cannot be parsed.
    """
    match = _SCHEME.match(text)
    if match is None:
        return Path(text).expanduser()
    scheme = match.group(1).lower()
    engine = SCHEMES.get(scheme)
    if engine is None:
        accepted = ", ".join(f"{name}://" for name in SCHEMES)
        raise ValueError(
            f"{redact(text)!r} is neither a file path nor a database URL agentsession "
            f"knows ({scheme}:// is not one of {accepted})"
        )
    url = scheme + text[len(scheme) :]
    try:
        urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"{redact(url)!r} is not a valid URL ({exc})") from None
    return DatabaseUrl(url, engine)


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder for agentsession's own files (the default database, chat history).

    ``$XDG_DATA_HOME/agentsession`` when that is an absolute path, else
    ``%LOCALAPPDATA%\\agentsession`` on Windows, else ``~/.local/share/agentsession``.
    """
    env = os.environ if env is None else env
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "agentsession"
    if os.name == "nt" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "agentsession"
    return Path.home() / ".local" / "share" / "agentsession"


def default_db(env: Mapping[str, str] | None = None) -> Database:
    """The database used when ``--db`` is not given: ``AGENTSESSION_DB`` or ``data_dir()``.

    Raises:
        ValueError: ``AGENTSESSION_DB`` is a URL of an unknown scheme.
    """
    env = os.environ if env is None else env
    named = env.get(DB_ENV, "")
    if named:
        return parse_db(named)
    return data_dir(env) / "sessions.db"


def is_default(target: Database, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``target`` is what ``default_db(env)`` names (so ``--db`` can be left out).

    ``False`` when ``AGENTSESSION_DB`` is a URL of an unknown scheme.
    """
    try:
        return target == default_db(env)
    except ValueError:
        return False


def resolve_db(db: str | None) -> Database:
    """The database a command works on: ``--db`` if given, else the default.

    Raises:
        click.BadParameter: a URL of an unknown scheme (exit code 2); the message lists
            the accepted ones.
    """
    try:
        return parse_db(db) if db else default_db()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'--db' / {DB_ENV}") from exc


def db_argument(target: Database) -> str:
    """``target`` as ``--db`` takes it back: the path, or the URL with its password."""
    return target.url if isinstance(target, DatabaseUrl) else str(target)


def _check_agentsession_db(path: Path) -> None:
    """Refuse ``path`` unless it is a readable agentsession database; never writes to it.

    Raises:
        click.ClickException: a directory, not SQLite, or SQLite without our tables.
    """
    if path.is_dir():
        raise click.ClickException(f"{path} is a directory, not a database file")
    try:
        # Read-only, so that checking can never create or change the file.
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot open {path}: {exc}") from exc
    try:
        names = sqlite_utils.Database(conn).table_names()
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(
            f"{path} is not an agentsession database (not a SQLite file: {exc})"
        ) from exc
    finally:
        conn.close()
    if SESSIONS not in names:
        raise click.ClickException(
            f"{path} is not an agentsession database (it has no {SESSIONS} table)"
        )


@contextlib.contextmanager
def _server_errors(target: DatabaseUrl) -> Iterator[None]:
    """Turn a missing driver or a server that failed into a one-line error.

    The stores' messages name the server (host and port, never the password), the
    ``MissingDependencyError`` ones the ``pip install`` line; a password a driver quoted
    is masked all the same. An agentsession module that fails to import is a broken
    installation, not a missing extra, and is left to propagate.

    Raises:
        click.ClickException: in place of ``StoreError`` or a driver's ``ImportError``.
    """
    try:
        yield
    except (ImportError, StoreError) as exc:
        if isinstance(exc, (MissingDependencyError, StoreError)):
            message = str(exc)
        elif (exc.name or "").partition(".")[0] == "agentsession":
            raise
        else:  # the driver failed to import some other way than the stores foresee
            message = (
                f"{target} needs the {target.engine} driver, which cannot be imported "
                f"({exc}): pip install 'agentsession[{target.engine}]'"
            )
        message = cli_words(message.replace(target.url, target.masked))
        raise click.ClickException(redact(message)) from exc


def _open_server_store(target: DatabaseUrl) -> CliStore:
    """A ``PostgresStore`` or ``RedisStore`` on ``target`` (see ``open_store``)."""
    with _server_errors(target):
        if target.engine == "postgres":
            from ..stores.postgres import PostgresStore

            return PostgresStore(target.url, encryption=encryption_from_env())
        from ..stores.redis import RedisStore

        return RedisStore(target.url, encryption=encryption_from_env())


def open_store(target: Database) -> CliStore:
    """Open an existing database for an inspecting or history command.

    A file must already be an agentsession database: nothing is created. A server only
    has to answer (PostgreSQL gets agentsession's tables in schema ``public`` on first
    use; Redis needs nothing).

    Raises:
        click.ClickException: the file does not exist, is not an agentsession database,
            or cannot be opened; the driver of the URL's engine is not installed (the
            message has the ``pip install`` line); the server cannot be reached. The
            message names the path or the URL (password masked).
    """
    if isinstance(target, DatabaseUrl):
        return _open_server_store(target)
    if not target.exists():
        raise click.ClickException(
            f"no database at {target} (nothing is created by this command; "
            "'agentsession demo' or 'agentsession chat' creates one, or pass --db)"
        )
    _check_agentsession_db(target)
    try:
        return SQLiteStore(target, encryption=encryption_from_env())
    except StoreError as exc:
        raise click.ClickException(cli_words(str(exc))) from exc


def create_store(path: Path) -> CliStore:
    """Open the SQLite file ``path``, creating it (not its folder) if it is missing.

    Raises:
        click.ClickException: the folder is missing, the file is not an agentsession
            database, or it cannot be opened.
    """
    if path.exists():
        return open_store(path)
    if not path.parent.is_dir():
        raise click.ClickException(f"cannot create {path}: folder {path.parent} is missing")
    try:
        return SQLiteStore(path, encryption=encryption_from_env())
    except StoreError as exc:
        raise click.ClickException(cli_words(str(exc))) from exc


def open_memory(target: Database, *, create_folder: bool) -> StoreMemory:
    """Open the database a chat or the demo writes to, creating a missing file.

    A path gives a ``SQLiteSessionMemory``, a ``postgresql://`` URL a
    ``PostgresSessionMemory``, a ``redis://`` one a ``RedisSessionMemory``.

    Args:
        target: the database file or server.
        create_folder: create a missing parent folder of a file (readable by the owner
            only); used for the default path, whose folder a fresh machine does not have
            yet. Ignored for a URL.

    Raises:
        click.ClickException: an existing file that is not an agentsession database, a
            missing folder (when not created), a database that cannot be opened, a
            missing driver or a server that cannot be reached; the message names the path
            or the URL (password masked).
    """
    if isinstance(target, DatabaseUrl):
        with _server_errors(target):
            if target.engine == "postgres":
                return PostgresSessionMemory(target.url, encryption=encryption_from_env())
            return RedisSessionMemory(target.url, encryption=encryption_from_env())
    path = target
    if path.exists() and (path.is_dir() or path.stat().st_size > 0):
        _check_agentsession_db(path)
    if create_folder and not path.parent.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise click.ClickException(
                f"cannot create folder {path.parent}: {exc.strerror}"
            ) from exc
    try:
        return SQLiteSessionMemory(path, encryption=encryption_from_env())
    except StoreError as exc:
        raise click.ClickException(cli_words(str(exc))) from exc
