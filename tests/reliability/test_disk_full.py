"""Disk full: a write that finds no room fails clearly, history survives, and writing
works again once there is room."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsession import SQLiteStore

from . import _workers
from ._workers import big_batch, check_bookkeeping, integrity_check, receive

pytestmark = pytest.mark.timeout(120)

HISTORY = [{"role": "user", "content": f"earlier {i} " + "h" * 200} for i in range(50)]


def _check(report: dict[str, Any], path: Path, full_words: tuple[str, ...]) -> str:
    """The common proof; returns the error message with the path replaced by <path>."""
    failed, history, retried = report["failed"], report["history"], report["retried"]
    assert not failed["ok"], "the add that could not fit succeeded"
    assert failed["store_error"], failed
    assert str(path) in failed["message"], failed
    assert failed["cause"] in ("OperationalError", "DatabaseError"), failed
    assert any(word in failed["message"] for word in full_words), failed
    assert history["ok"] and history["value"] == HISTORY, "history damaged by the failed add"
    assert retried["ok"], retried
    assert integrity_check(path) == ["ok"]
    check_bookkeeping(path)
    with SQLiteStore(path) as store:
        assert store.get_messages("s") == HISTORY + big_batch(2)
    return str(failed["message"]).replace(str(path), "<path>")


def test_a_write_past_the_file_size_limit_fails_clearly_and_keeps_history(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    """A writer whose file-size limit (``RLIMIT_FSIZE``, SIGXFSZ ignored) leaves 8 KiB of
    room tries to add 400 KB, then the limit is lifted and it adds again.

    Proves: the add raises ``StoreError`` naming the file, with sqlite3's error as
    ``__cause__``; the history read right after is intact; none of the failed add is
    stored; the retry in the same process, on the same store, succeeds; the file is sound.
    """
    path = tmp_path / "limited.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", HISTORY)
    proc, conn = spawn(_workers.file_size_limited_writer, str(path))
    report = receive(conn, "done", proc)[1]
    proc.join(30)
    message = _check(report, path, ("full", "disk I/O error", "too large"))
    _workers.figure(f"disk full (file-size limit): StoreError: {message}")


@pytest.fixture
def small_filesystem() -> Iterator[Path]:
    """A 2 MiB tmpfs, mounted for the test; skipped where we may not mount one."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the file-size-limit test runs anyway)")
    mount_point = Path(tempfile.mkdtemp(prefix="agentsession-full-"))
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
        mount_point.rmdir()


def test_a_write_to_a_full_disk_fails_clearly_and_keeps_history(
    small_filesystem: Path, spawn: Callable[..., Any]
) -> None:
    """On a 2 MiB file system filled to the last byte, a writer tries to add 400 KB; then
    the filler file is deleted and it adds again.

    Proves: the add raises ``StoreError`` naming the file and saying the disk is full,
    with sqlite3's error as ``__cause__``; history intact; nothing of the failed add
    stored; the retry succeeds once there is room; the file is sound.
    """
    path = small_filesystem / "full.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", HISTORY)
    proc, conn = spawn(_workers.full_disk_writer, str(path), str(small_filesystem / "filler"))
    report = receive(conn, "done", proc)[1]
    proc.join(30)
    message = _check(report, path, ("full",))
    _workers.figure(f"disk full (tmpfs): StoreError: {message}")
