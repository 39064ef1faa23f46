"""SQLiteStore's history cache: full reads fetch only new rows, and never return stale data.

Each case fills the cache of one store object (``reader``), changes the session through a
second store object on the same file (as another thread's or process's store would, with
a cache of its own), and checks that the reader's next full read is exactly what a store
without a cache reads.
"""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agentsession import Encryption, SQLiteStore
from agentsession.encryption import generate_key

S = "s"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "output_text", "text": text}]}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


@pytest.fixture
def reader(path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(path) as store:
        yield store


@pytest.fixture
def other(path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(path) as store:
        yield store


def truth(path: Path) -> list[dict[str, Any]]:
    with SQLiteStore(path, history_cache=0) as store:
        return store.get_messages(S)


def _raw(path: Path, sql: str, *params: Any) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


def _rewind_then_add_as_many(store: SQLiteStore) -> None:
    # The same count and the same last seq as before: only the history's mark differs.
    store.rewind(S)
    store.add_messages(S, [user("other question"), reply("other answer")])


def _clear_then_add_as_many(store: SQLiteStore) -> None:
    # The sessions row is deleted and made again, with the same row id (the largest).
    store.clear_session(S)
    store.add_messages(S, [user(f"new {i}") for i in range(4)])


def _import_replacing(store: SQLiteStore) -> None:
    source = io.StringIO()
    with SQLiteStore(":memory:") as elsewhere:
        elsewhere.add_messages(S, [user("imported 1"), reply("imported 2"), user("i3")])
        elsewhere.add_messages(S, [reply("imported 4")])
        elsewhere.export_jsonl(source)
    source.seek(0)
    store.import_jsonl(source, on_conflict="replace")


def _edit_a_stored_message(path: Path) -> None:
    _raw(
        path,
        "UPDATE agentsession_messages SET message = ? WHERE seq = 2",
        '{"role": "assistant", "content": "edited"}',
    )


CHANGES: dict[str, Callable[[SQLiteStore, Path], Any]] = {
    "append": lambda store, _: store.add_messages(S, [user("5"), reply("6")]),
    "pop": lambda store, _: store.pop_message(S),
    "rewind": lambda store, _: store.rewind(S),
    "truncate": lambda store, _: store.truncate(S, 1),
    "rewind, then as many added": lambda store, _: _rewind_then_add_as_many(store),
    "clear, then as many added": lambda store, _: _clear_then_add_as_many(store),
    "clear": lambda store, _: store.clear_session(S),
    "import replacing it": lambda store, _: _import_replacing(store),
    "prune keeping the last 2": lambda store, _: store.prune(keep_last=2),
    "prune of idle sessions": lambda store, _: store.prune(older_than=timedelta(0)),
    "a row edited by another program": lambda _, path: _edit_a_stored_message(path),
    "a row deleted by another program": lambda _, path: _raw(
        path, "DELETE FROM agentsession_messages WHERE seq = 1"
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_full_read_sees_every_change_made_through_another_store(
    change: str, path: Path, reader: SQLiteStore, other: SQLiteStore
) -> None:
    reader.add_messages(S, [user("1"), reply("2"), user("3"), reply("4")])
    assert reader.get_messages(S) == truth(path)  # the cache now holds the session
    CHANGES[change](other, path)
    expected = truth(path)
    assert reader.get_messages(S) == expected
    assert reader.get_messages(S) == expected  # and what it keeps afterwards holds too


def test_a_second_full_read_is_served_from_the_cache(path: Path, reader: SQLiteStore) -> None:
    cache = reader._history_cache
    assert cache is not None
    reader.add_messages(S, [user("1"), reply("2")])
    reader.get_messages(S)
    assert (cache.hits, cache.misses) == (0, 1)
    reader.add_messages(S, [user("3"), reply("4")])
    assert reader.get_messages(S) == [user("1"), reply("2"), user("3"), reply("4")]
    assert reader.get_messages(S) == truth(path)
    assert (cache.hits, cache.misses) == (2, 1)


def test_a_run_first_read_uses_the_cache(reader: SQLiteStore) -> None:
    cache = reader._history_cache
    assert cache is not None
    reader.add_messages(S, [user("1"), reply("2")])
    for _ in range(2):
        assert reader.lock_and_read(S, "run", 30) == [user("1"), reply("2")]
        reader.write_and_unlock(S, "run", [])
    assert (cache.hits, cache.misses) == (1, 1)
    assert reader.lock_and_read(S, "other", 30) == [user("1"), reply("2")]
    assert reader.lock_and_read(S, "another", 30) is None  # the lease still holds


def test_what_a_caller_does_to_a_read_changes_nothing_kept(reader: SQLiteStore) -> None:
    reader.add_messages(S, [user("1"), reply("2")])
    for _ in range(2):
        got = reader.get_messages(S)
        got[0]["content"] = "changed"
        got[1]["content"][0]["text"] = "changed"
        got.append(user("extra"))
    assert reader.get_messages(S) == [user("1"), reply("2")]


def test_a_corrupt_row_stays_skipped(
    path: Path, reader: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    reader.add_messages(S, [user("1"), user("2"), user("3")])
    _raw(path, "UPDATE agentsession_messages SET message = 'not json{' WHERE seq = 2")
    with caplog.at_level(logging.WARNING, "agentsession"):
        assert reader.get_messages(S) == [user("1"), user("3")]
    assert "corrupt" in caplog.text
    reader.add_messages(S, [user("4")])
    assert reader.get_messages(S) == [user("1"), user("3"), user("4")]


def test_a_small_cache_drops_the_least_recently_read_session(path: Path) -> None:
    with SQLiteStore(path, history_cache=1000) as store:  # about 4 of these sessions
        cache = store._history_cache
        assert cache is not None
        for name in "abcde":
            store.add_messages(name, [user(name * 200)])
            store.get_messages(name)
            if name == "d":
                store.get_messages("a")  # read again: "b" is now the least recently read
        assert cache.get("b") is None
        assert all(cache.get(name) is not None for name in "acde")
        assert store.get_messages("b") == [user("b" * 200)]
        store.add_messages("big", [user("x" * 2000)])  # over a quarter: never kept
        store.get_messages("big")
        assert cache.get("big") is None


def test_the_cache_can_be_turned_off_and_is_checked(path: Path) -> None:
    with SQLiteStore(path, history_cache=0) as store:
        assert store._history_cache is None
        store.add_messages(S, [user("1")])
        assert store.get_messages(S) == [user("1")]
    with pytest.raises(TypeError, match="history_cache must be a number of bytes, got '1'"):
        SQLiteStore(path, history_cache="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="history_cache must be 0 or more bytes, got -1"):
        SQLiteStore(path, history_cache=-1)


def test_an_encrypted_store_keeps_no_plaintext_cache(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    encryption = Encryption(generate_key())
    with SQLiteStore(tmp_path / "secret.db", encryption=encryption) as store:
        assert store._history_cache is None
        store.add_messages(S, [user("1")])
        assert store.get_messages(S) == [user("1")]
