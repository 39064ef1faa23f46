"""JSON Lines export and import named by a path, on every store.

An export to a path writes a private (0600) file that appears whole or not at all: an
export that fails part way leaves whatever was at the path before, and no stray file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _fill(store: Any) -> None:
    store.add_messages("a", [user("for a 1"), user("for a 2")])
    store.add_messages("b", [user("für b ✓")])
    store.set_metadata("b", {"k": "v"})


def _folder(tmp_path: Path) -> Path:
    """An empty folder of its own (a SQLite file store keeps its files in ``tmp_path``)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_export_to_a_path_and_import_from_it_round_trip(
    store: Any, store_kind: str, store_factory: Callable[[str], Any], tmp_path: Path, as_str: bool
) -> None:
    _fill(store)
    path = _folder(tmp_path) / "out.jsonl"
    target = str(path) if as_str else path
    assert store.export_jsonl(target) == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(path.parent) == ["out.jsonl"]  # the temporary file is gone
    copy = store_factory(store_kind)
    assert copy.import_jsonl(target) == 2
    for session_id in ("a", "b"):
        assert copy.get_messages(session_id) == store.get_messages(session_id)
    assert copy.session_info("b").metadata == {"k": "v"}


def test_a_path_export_writes_what_a_file_export_writes(store: Any, tmp_path: Path) -> None:
    _fill(store)
    with (tmp_path / "by-file.jsonl").open("w", encoding="utf-8") as fp:
        store.export_jsonl(fp, session_ids=["a", "b"])
    store.export_jsonl(tmp_path / "by-path.jsonl", session_ids=["a", "b"])
    assert (tmp_path / "by-path.jsonl").read_bytes() == (tmp_path / "by-file.jsonl").read_bytes()


def test_a_failed_export_leaves_the_old_file_and_no_partial_one(store: Any, tmp_path: Path) -> None:
    _fill(store)
    path = _folder(tmp_path) / "out.jsonl"
    path.write_text("the previous export\n", encoding="utf-8")

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C between two sessions

    with pytest.raises(KeyboardInterrupt):
        store.export_jsonl(path, progress=interrupt)
    with pytest.raises(ValueError, match="no session 'nobody'"):
        store.export_jsonl(path, session_ids=["a", "nobody"])
    assert path.read_text(encoding="utf-8") == "the previous export\n"
    assert os.listdir(path.parent) == ["out.jsonl"]
    with pytest.raises(FileNotFoundError):
        store.export_jsonl(tmp_path / "no-such-folder" / "out.jsonl")


def test_importing_a_missing_or_non_utf8_path_stores_nothing(store: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.import_jsonl(tmp_path / "missing.jsonl")
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"type":"session","version":1,"session_id":"s\xe9"}\n')
    with pytest.raises(UnicodeDecodeError):
        store.import_jsonl(latin1)
    assert store.list_sessions() == []
