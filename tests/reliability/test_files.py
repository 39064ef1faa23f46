"""Files: every path that cannot hold a database fails clearly, by name, and changes
nothing; the files a store creates are readable by their owner only.

Already covered in ``tests/test_sqlite.py``: a directory and a missing folder
(``test_bad_paths_are_named_in_the_error``), a text file
(``test_a_file_that_is_not_sqlite_is_refused_by_name``) and owner-only modes under umask
022 (``test_database_and_its_wal_files_are_readable_by_owner_only``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsession import SQLiteStore, StoreError

from . import _workers
from ._workers import receive

pytestmark = pytest.mark.timeout(120)

UNPRIVILEGED = 65534  # "nobody"


def _sqlite_bytes(tmp_path: Path) -> bytes:
    SQLiteStore(tmp_path / "model.db").close()
    return (tmp_path / "model.db").read_bytes()


@pytest.mark.parametrize(
    "kind",
    [
        "symlink-to-a-directory",
        "inside-a-regular-file",
        "binary-garbage",
        "sqlite-header-then-garbage",
        "truncated-sqlite-file",
        "two-bytes",
    ],
)
def test_paths_that_cannot_hold_a_database_fail_by_name_and_change_nothing(
    kind: str, tmp_path: Path
) -> None:
    """Proves: opening raises ``StoreError`` (a ``SchemaError`` for files that are not
    SQLite) whose message names the path, with the driver's error as ``__cause__`` where
    there is one; the file found there is left byte for byte as it was."""
    path = tmp_path / "target.db"
    if kind == "symlink-to-a-directory":
        (tmp_path / "folder").mkdir()
        path.symlink_to(tmp_path / "folder")
    elif kind == "inside-a-regular-file":
        (tmp_path / "notes.txt").write_text("notes")
        path = tmp_path / "notes.txt" / "target.db"
    elif kind == "binary-garbage":
        path.write_bytes(bytes(range(256)) * 20)
    elif kind == "sqlite-header-then-garbage":
        path.write_bytes(_sqlite_bytes(tmp_path)[:16] + bytes(range(256)) * 20)
    elif kind == "truncated-sqlite-file":
        path.write_bytes(_sqlite_bytes(tmp_path)[:100])
    else:
        path.write_bytes(b"hi")
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(StoreError) as info:
        SQLiteStore(path)
    assert str(path) in str(info.value)
    if before is not None:
        assert path.read_bytes() == before
        assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


@pytest.fixture
def shared_folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A folder an unprivileged user can reach, and that user's uid.

    As root that is a fresh folder under the system temp dir (pytest's own is private to
    root) and uid 65534; as anyone else, ``tmp_path`` and our own uid.
    """
    if os.geteuid() != 0:
        yield tmp_path, os.getuid()
        return
    folder = Path(tempfile.mkdtemp(prefix="agentsession-reliability-"))
    folder.chmod(0o755)
    try:
        yield folder, UNPRIVILEGED
    finally:
        shutil.rmtree(folder)


def _database(path: Path, owner: int | None) -> None:
    with SQLiteStore(path) as store:
        store.add_messages("s", [{"role": "user", "content": "kept"}])
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner, owner)


@pytest.mark.parametrize(
    ("case", "fails_at"),
    [
        ("unreadable-file", "open"),
        ("read-only-file", "write"),
        ("read-only-folder", "open"),
        ("new-file-in-a-read-only-folder", "open"),
    ],
)
def test_files_the_user_may_not_write_fail_by_name(
    case: str,
    fails_at: str,
    shared_folder: tuple[Path, int],
    spawn: Callable[..., Any],
) -> None:
    """A database the user cannot read, or can read but not write, or in a folder where
    SQLite cannot create its WAL and shared-memory files; a new file in such a folder.

    Run in a child process as an unprivileged user (root drops to uid 65534 first, since
    file modes do not stop root); permissions set with chmod/chown.

    Proves: the operation that cannot work (opening, or for a read-only file only
    writing: reads work) raises ``StoreError`` naming the path; the steps before it
    succeed; the database's history is unchanged.
    """
    folder, uid = shared_folder
    mine = folder / "mine"
    mine.mkdir()
    if os.geteuid() == 0:
        os.chown(mine, uid, uid)
    path = mine / "chat.db"
    if case == "unreadable-file":
        _database(path, owner=None)
        path.chmod(0o000 if os.geteuid() != 0 else 0o600)  # root's file, mode 0600
    elif case == "read-only-file":
        _database(path, owner=uid)
        path.chmod(0o444)
    elif case == "read-only-folder":
        _database(path, owner=uid)
        mine.chmod(0o555)
        if os.geteuid() == 0:
            os.chown(mine, 0, 0)
    else:
        mine.chmod(0o555)
        if os.geteuid() == 0:
            os.chown(mine, 0, 0)
    before = path.read_bytes() if path.exists() else None

    proc, conn = spawn(_workers.unprivileged_user, uid, str(path))
    outcomes = receive(conn, "outcomes", proc)[1]
    proc.join(30)
    failed = outcomes[-1]
    assert [o["step"] for o in outcomes][-1] == fails_at, outcomes
    assert all(o["ok"] for o in outcomes[:-1]), outcomes
    assert not failed["ok"] and failed["store_error"], failed
    assert str(path) in failed["message"], failed
    if case == "read-only-file":
        assert outcomes[1]["value"] == 1  # the history was readable
    mine.chmod(0o755)
    if before is not None:
        path.chmod(0o600)
        assert path.read_bytes() == before
    message = failed["message"].replace(str(path), "<path>")
    _workers.figure(f"files: {case}: {failed['type']} at {fails_at}: {message}")


@pytest.mark.parametrize("through", ["plain-path", "dangling-symlink"])
def test_created_files_are_readable_by_their_owner_only_even_under_umask_000(
    through: str, tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    """A new database, in a process whose umask is 000, opened directly or through a
    symlink that points where the file is to be created.

    Proves: the database, its WAL, its shared-memory file and the set-up lock file are
    mode 0600 while the store is open, both when created and when SQLite recreates the
    WAL and shared-memory files on reopening.
    """
    path = tmp_path / "private.db"
    if through == "dangling-symlink":
        (tmp_path / "link.db").symlink_to(path)
        path = tmp_path / "link.db"
    proc, conn = spawn(_workers.private_files, str(path))
    _, created, reopened = receive(conn, "modes", proc)
    proc.join(30)
    expected = {"db": 0o600, "wal": 0o600, "shm": 0o600, "lock": 0o600}
    shown = {k: oct(v) for k, v in created.items()}, {k: oct(v) for k, v in reopened.items()}
    assert created == expected, shown
    assert reopened == expected, shown


#: Runs the command line as another user: everything is imported first (the interpreter
#: may live where that user cannot read), then root drops to the user (modes do not stop
#: root) and the command runs in this process.
_AS_USER = """
import os, sys
import click._termui_impl, encodings.idna, json
from agentsession.cli import cli
uid = int(sys.argv[1])
if os.geteuid() == 0:
    os.setgid(uid)
    os.setuid(uid)
cli.main(sys.argv[2:], prog_name="agentsession")
"""


def _agentsession_as(uid: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line, ``args``, in a process of user ``uid``, with no colour."""
    return subprocess.run(
        [sys.executable, "-c", _AS_USER, str(uid), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_a_database_in_a_read_only_folder_is_read_and_the_folder_named(
    shared_folder: tuple[Path, int],
) -> None:
    """A valid database in a folder its user cannot write to (SQLite cannot create its
    journal files there).

    Proves: the commands that only read it work (the file opened read-only); one that
    would change it fails in one line saying the folder is read-only, not that the file
    is no agentsession database; nothing beside the file is created, and it is unchanged.
    """
    folder, uid = shared_folder
    mine = folder / "mine"
    mine.mkdir()
    path = mine / "chat.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", [{"role": "user", "content": "kept in a read-only folder"}])
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
    mine.chmod(0o555)
    before = sorted(mine.iterdir()), path.read_bytes()
    try:
        listed = _agentsession_as(uid, "sessions", "--db", str(path))
        assert listed.returncode == 0, listed.stderr
        assert "s " in listed.stdout
        shown = _agentsession_as(uid, "show", "s", "--db", str(path))
        assert shown.returncode == 0 and "kept in a read-only folder" in shown.stdout
        exported = _agentsession_as(uid, "export", "--db", str(path))
        assert exported.returncode == 0 and '"session_id":"s"' in exported.stdout
        found = _agentsession_as(uid, "search", "kept", "--db", str(path))
        assert found.returncode == 0, found.stderr
        cleared = _agentsession_as(uid, "clear", "s", "--yes", "--db", str(path))
        assert cleared.returncode == 1
        assert "is in a folder you cannot write to" in cleared.stderr
        assert "not an agentsession database" not in cleared.stderr
        assert len(cleared.stderr.strip().splitlines()) == 1
        assert (sorted(mine.iterdir()), path.read_bytes()) == before
    finally:
        mine.chmod(0o755)
