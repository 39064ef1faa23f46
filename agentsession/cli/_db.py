"""Where the command line keeps its database, and opening it without surprises.

The default database is ``$XDG_DATA_HOME/agentsession/sessions.db`` (``XDG_DATA_HOME``
defaults to ``~/.local/share``; on Windows ``%LOCALAPPDATA%`` is used); ``--db`` and the
``AGENTSESSION_DB`` environment variable override it. Inspecting commands never create a
database; every command refuses a file that is not an agentsession database rather than
adding tables to it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import click
import sqlite_utils

from ..exceptions import StoreError
from ..memory import SQLiteSessionMemory
from ..stores._sqlite_schema import SESSIONS
from ..stores.sqlite import SQLiteStore

__all__ = (
    "DB_ENV",
    "data_dir",
    "default_db_path",
    "open_memory",
    "open_store",
    "resolve_db",
)

#: Environment variable naming the database file, overridden by ``--db``.
DB_ENV = "AGENTSESSION_DB"


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


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """The database used when ``--db`` is not given: ``AGENTSESSION_DB`` or ``data_dir()``."""
    env = os.environ if env is None else env
    named = env.get(DB_ENV, "")
    if named:
        return Path(named).expanduser()
    return data_dir(env) / "sessions.db"


def resolve_db(db: str | None) -> Path:
    """The database path a command works on: ``--db`` if given, else the default."""
    return Path(db).expanduser() if db else default_db_path()


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


def open_store(path: Path) -> SQLiteStore:
    """Open an existing agentsession database for an inspecting command.

    Raises:
        click.ClickException: the file does not exist (it is not created), is not an
            agentsession database, or cannot be opened; the message names the path.
    """
    if not path.exists():
        raise click.ClickException(
            f"no database at {path} (nothing is created by this command; "
            "'agentsession demo' or 'agentsession chat' creates one, or pass --db)"
        )
    _check_agentsession_db(path)
    try:
        return SQLiteStore(path)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


def open_memory(path: Path, *, create_folder: bool) -> SQLiteSessionMemory:
    """Open (creating if missing) the database a chat or the demo writes to.

    Args:
        path: the database file.
        create_folder: create missing parent folders (readable by the owner only); used
            for the default path, whose folder a fresh machine does not have yet.

    Raises:
        click.ClickException: an existing file that is not an agentsession database, a
            missing folder (when not created), or a database that cannot be opened.
    """
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
        return SQLiteSessionMemory(path)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
