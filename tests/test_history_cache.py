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
from agentsession.stores.history_cache import MIN_ROWS

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


def history(turns: int, start: int = 0) -> list[dict[str, Any]]:
    """``turns`` whole turns: question k, answer k."""
    return [m for k in range(start, start + turns) for m in (user(str(k)), reply(str(k)))]


def warm(store: SQLiteStore, session_id: str = S) -> list[dict[str, Any]]:
    """Give the session enough rows to be kept, read it until it is, return the read."""
    store.add_messages(session_id, history(MIN_ROWS // 2 + 2))
    store.get_messages(session_id)  # seen to be long enough
    got = store.get_messages(session_id)  # now kept
    assert store._history_cache is not None and store._history_cache.get(session_id)
    return got


def truth(path: Path) -> list[dict[str, Any]]:
    with SQLiteStore(path, history_cache=0) as store:
        return store.get_messages(S)


def truth_of(path: Path, session_id: str) -> list[dict[str, Any]]:
    with SQLiteStore(path, history_cache=0) as store:
        return store.get_messages(session_id)


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
    # The sessions row is deleted and made again, with the same row id (the largest), and
    # as many rows as before.
    count = store.message_count(S)
    store.clear_session(S)
    store.add_messages(S, history(count // 2, start=5000))


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
    assert warm(reader) == truth(path)
    CHANGES[change](other, path)
    expected = truth(path)
    assert reader.get_messages(S) == expected
    assert reader.get_messages(S) == expected  # and what it keeps afterwards holds too


def test_a_long_session_is_kept_and_then_read_from_the_cache(
    path: Path, reader: SQLiteStore
) -> None:
    cache = reader._history_cache
    assert cache is not None
    reader.add_messages("short", history(MIN_ROWS // 2 - 1))
    for _ in range(3):
        assert reader.get_messages("short") == history(MIN_ROWS // 2 - 1)
    assert cache.get("short") is None and (cache.hits, cache.misses) == (0, 3)
    before = warm(reader)
    assert (cache.hits, cache.misses) == (0, 5)
    reader.add_messages(S, history(1, start=1000))
    assert reader.get_messages(S) == before + history(1, start=1000) == truth(path)
    assert reader.get_messages(S) == truth(path)
    assert (cache.hits, cache.misses) == (2, 5)
    for turn in range(12):  # more appends than chunks are kept apart: they are merged
        reader.add_messages(S, history(1, start=2000 + turn))
        assert reader.get_messages(S) == truth(path)
    assert (cache.hits, cache.misses) == (14, 5)


def test_a_run_first_read_uses_the_cache(reader: SQLiteStore) -> None:
    cache = reader._history_cache
    assert cache is not None
    expected = warm(reader)
    hits = cache.hits
    for _ in range(2):
        assert reader.lock_and_read(S, "run", 30) == expected
        reader.write_and_unlock(S, "run", [])
    assert cache.hits == hits + 2
    assert reader.lock_and_read(S, "other", 30) == expected
    assert reader.lock_and_read(S, "another", 30) is None  # the lease still holds


def test_what_a_caller_does_to_a_read_changes_nothing_kept(reader: SQLiteStore) -> None:
    expected = warm(reader)
    for _ in range(2):
        got = reader.get_messages(S)
        got[0]["content"] = "changed"
        got[1]["content"][0]["text"] = "changed"
        got.append(user("extra"))
    assert reader.get_messages(S) == expected


def test_a_corrupt_row_stays_skipped(
    path: Path, reader: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    expected = warm(reader)
    _raw(path, "UPDATE agentsession_messages SET message = 'not json{' WHERE seq = 2")
    del expected[1]
    with caplog.at_level(logging.WARNING, "agentsession"):
        assert reader.get_messages(S) == expected
        assert reader.get_messages(S) == expected
    assert "corrupt" in caplog.text
    reader.add_messages(S, [user("4")])
    assert reader.get_messages(S) == [*expected, user("4")] == truth(path)


def test_a_small_cache_drops_the_least_recently_read_session(path: Path) -> None:
    with SQLiteStore(path) as store:
        warm(store, "probe")
        kept = store._history_cache.get("probe")  # type: ignore[union-attr]
        assert kept is not None
        size = kept.size
    with SQLiteStore(path, history_cache=size * 4 + size // 2) as store:  # 4 such sessions
        cache = store._history_cache
        assert cache is not None
        for name in "abcde":
            warm(store, name)
            if name == "d":
                store.get_messages("a")  # read again: "b" is now the least recently read
        assert cache.get("b") is None
        assert all(cache.get(name) is not None for name in "acde")
        assert store.get_messages("b") == truth_of(path, "b")
        store.add_messages("big", history(MIN_ROWS * 4))  # over a quarter: never kept
        store.get_messages("big")
        store.get_messages("big")
        assert cache.get("big") is None


def test_the_cache_can_be_turned_off_and_is_checked(path: Path) -> None:
    with SQLiteStore(path, history_cache=0) as store:
        assert store._history_cache is None
        store.add_messages(S, history(MIN_ROWS))
        assert store.get_messages(S) == store.get_messages(S) == history(MIN_ROWS)
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


def _turns_of(messages: list[dict[str, Any]]) -> list[int]:
    """The turn numbers of a history of whole turns (question k, answer k), in order."""
    assert len(messages) % 2 == 0, messages
    numbers = []
    for question, answer in zip(messages[::2], messages[1::2], strict=True):
        assert question["role"] == "user" and answer["role"] == "assistant", (question, answer)
        number = int(question["content"])
        assert answer["content"][0]["text"] == str(number)
        numbers.append(number)
    return numbers


def test_reads_stay_whole_and_ordered_while_threads_add_and_rewind(path: Path) -> None:
    """Threads of two stores (two caches) add turns, rewind, clear and read one session
    at once; every read is a history of whole turns in the order they were added, and
    afterwards both stores read exactly what a store without a cache reads."""
    import random
    import threading

    stores = [SQLiteStore(path), SQLiteStore(path)]
    stores[0].add_messages(S, history(MIN_ROWS // 2 + 4, start=-1000))  # kept from the start
    numbers = iter(range(1, 10**6))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        store = stores[seed % 2]
        try:
            for _ in range(150):
                action = rng.random()
                if action < 0.45:
                    with lock:  # numbered in the order they are added
                        number = next(numbers)
                        store.add_messages(S, [user(str(number)), reply(str(number))])
                elif action < 0.55:
                    store.rewind(S)
                elif action < 0.56:
                    store.clear_session(S)
                else:
                    turns = _turns_of(store.get_messages(S))
                    assert turns == sorted(turns) and len(set(turns)) == len(turns), turns
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors[0]
        assert sum(store._history_cache.hits for store in stores) > 0  # type: ignore[union-attr]
        expected = truth(path)
        for store in stores:
            assert store.get_messages(S) == expected
    finally:
        for store in stores:
            store.close()


def test_a_long_history_stays_in_few_chunks_and_reads_back_whole(reader: SQLiteStore) -> None:
    cache = reader._history_cache
    assert cache is not None
    expected = warm(reader)
    for turn in range(300):
        added = history(1, start=5000 + turn)
        reader.add_messages(S, added)
        expected += added
        assert reader.get_messages(S) == expected
    kept = cache.get(S)
    assert kept is not None and kept.rows == len(expected)
    # Chunks shrink geometrically (each more than half the one before it is merged into
    # it): a few for 300 appends, not one per append, and no whole-history re-encode.
    sizes = [len(chunk) for chunk in kept.chunks]
    assert len(sizes) <= 10
    assert all(older > 2 * newer for older, newer in zip(sizes, sizes[1:], strict=False))


def test_values_messagepack_cannot_hold_are_kept_exactly(reader: SQLiteStore) -> None:
    cache = reader._history_cache
    assert cache is not None
    odd = [
        {"role": "user", "content": "big", "n": 2**70, "m": -(2**65)},
        {"role": "user", "content": "lone \ud800 surrogate"},
    ]
    expected = warm(reader)
    reader.add_messages(S, odd)
    expected += odd
    for _ in range(3):
        got = reader.get_messages(S)
        assert got == expected
        assert got[-2]["n"] == 2**70 and got[-1]["content"] == "lone \ud800 surrogate"
    hits = cache.hits
    reader.add_messages(S, history(1, start=9000))
    assert reader.get_messages(S) == expected + history(1, start=9000)
    assert cache.hits == hits + 1
