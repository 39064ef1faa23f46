"""Text files named by a path: written whole or not at all, read as UTF-8.

Used by ``export_jsonl`` / ``import_jsonl`` when they are given a path instead of an open
file. Thread safety: each call opens files of its own, so calls may run at once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ("is_path", "replaced_text_file")


def is_path(value: Any) -> bool:
    """Whether ``value`` names a file (a ``str`` or ``os.PathLike``) rather than being one."""
    return isinstance(value, (str, os.PathLike))


@contextlib.contextmanager
def replaced_text_file(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """A UTF-8 text file that replaces ``path`` only if the ``with`` block succeeds.

    The text goes to a temporary file in the same folder, created readable by its owner
    only (0600). When the block ends without an exception the file is flushed to disk
    and renamed over ``path`` (``os.replace``, atomic); on any exception, Ctrl-C
    included, it is removed and ``path`` is left as it was. So an interrupted write
    never leaves a partial file.

    Raises:
        OSError: the folder does not exist or cannot be written, or the disk is full.
    """
    target = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(target))
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fp:
            yield fp
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Make the rename itself durable where the OS allows it (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
