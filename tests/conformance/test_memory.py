"""What every SessionMemory promises, through the async protocol and the SDK Session."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentsession import StoreMemory
from tests.conftest import bound

pytestmark = pytest.mark.anyio


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def test_unknown_session_is_empty(memory: Any) -> None:
    assert await memory.get_messages("nobody") == []


async def test_adds_keep_their_order_across_calls(memory: Any) -> None:
    await memory.add_messages("s", [user("1"), user("2")])
    await memory.add_messages("s", [user("3")])
    await memory.add_messages("s", [])
    assert await memory.get_messages("s") == [user("1"), user("2"), user("3")]


async def test_sessions_are_isolated_and_clear_touches_one(memory: Any) -> None:
    await memory.add_messages("a", [user("for a")])
    await memory.add_messages("b", [user("for b")])
    await memory.clear_session("a")
    assert await memory.get_messages("a") == []
    assert await memory.get_messages("b") == [user("for b")]
    await memory.add_messages("a", [user("again")])
    assert await memory.get_messages("a") == [user("again")]


@pytest.mark.parametrize(
    "session_id",
    ["üñíçødé 会话 🚀", "x'); DROP TABLE agentsession_messages; --", "a" * 5000, "nul\x00byte"],
    ids=["unicode", "sql", "long", "nul"],
)
async def test_awkward_session_ids_are_stored_safely(memory: Any, session_id: str) -> None:
    await memory.add_messages(session_id, [user("kept")])
    await memory.add_messages("plain", [user("other")])
    assert await memory.get_messages(session_id) == [user("kept")]
    assert await memory.get_messages("plain") == [user("other")]


async def test_concurrent_tasks_never_interleave_or_lose_a_batch(memory: Any) -> None:
    async def writer(n: int) -> None:
        for batch in range(10):
            await memory.add_messages("shared", [user(f"{n}:{batch}:{i}") for i in range(3)])

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(writer, n)
    texts = [m["content"] for m in await memory.get_messages("shared")]
    assert len(texts) == 8 * 10 * 3
    batches = [texts[i : i + 3] for i in range(0, len(texts), 3)]
    for batch in batches:
        prefix = batch[0].rsplit(":", 1)[0]
        assert batch == [f"{prefix}:{i}" for i in range(3)]
    for n in range(8):
        mine = [b[0].split(":")[1] for b in batches if b[0].startswith(f"{n}:")]
        assert mine == [str(b) for b in range(10)]


async def test_session_get_items_returns_newest_n_in_order(memory: Any) -> None:
    session = bound(memory, "s")
    await session.add_items([user(str(i)) for i in range(10)])
    assert await session.get_items(limit=3) == [user("7"), user("8"), user("9")]
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=50) == [user(str(i)) for i in range(10)]
    assert len(await session.get_items()) == 10


async def test_session_refuses_non_json_items_and_stores_nothing(memory: Any) -> None:
    session = bound(memory, "s")
    await session.add_items([user("before")])
    with pytest.raises(TypeError, match=r"message 1 .*b'raw'"):
        await session.add_items([user("fine"), {"role": "user", "content": b"raw"}])
    with pytest.raises(TypeError, match="nan"):
        await session.add_items([{"role": "user", "content": float("nan")}])
    assert await session.get_items() == [user("before")]


async def test_session_clear_session_empties_only_its_session(memory: Any) -> None:
    first, second = bound(memory, "first"), bound(memory, "second")
    await first.add_items([user("1")])
    await second.add_items([user("2")])
    await first.clear_session()
    assert await first.get_items() == []
    assert await second.get_items() == [user("2")]


async def test_items_round_trip_exactly(memory: Any) -> None:
    item = {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"temp": 21.5, "nested": [1, 2, {"deep": null}]}',
        "extra": {"unicode": "ßø ✓", "big": 2**60, "float": 0.1, "flag": False},
    }
    session = bound(memory, "s")
    await session.add_items([item])
    assert await session.get_items() == [item]


# -- StoreMemory over every engine: the store's methods, awaited ----------------------------


@pytest.fixture
def store_memory(store: Any) -> StoreMemory:
    """A ``StoreMemory`` over this test's store (one per engine in ``STORES``)."""
    return StoreMemory(store)


def call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def output(call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": "ok"}


REPLY = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "r"}]}


async def test_parallel_tool_calls_are_one_exchange_in_every_window(
    store_memory: StoreMemory,
) -> None:
    exchange = [call("c3"), call("c4"), call("c5"), output("c3"), output("c4"), output("c5")]
    await store_memory.add_messages("s", [user("q"), *exchange, REPLY])
    for limit in range(1, 7):  # every cut inside the exchange leaves all of it out
        assert await store_memory.get_messages("s", limit=limit) == [REPLY]
    assert await store_memory.get_messages("s", limit=7) == [*exchange, REPLY]
    # Asked for, the raw newest items: the exchange cut wherever the limit falls.
    assert await store_memory.get_messages("s", limit=5, tool_safe=False) == [
        *exchange[2:],
        REPLY,
    ]


async def test_turns_counts_and_metadata_filters_through_the_memory(
    store_memory: StoreMemory,
) -> None:
    await store_memory.add_messages("a", [user("1"), REPLY, user("2"), REPLY, user("3")])
    await store_memory.add_messages("b", [user("other")])
    await store_memory.set_metadata("b", {"team": "x"})
    assert await store_memory.message_count("a") == 5
    assert await store_memory.rewind("a") == [user("3")]
    assert await store_memory.rewind("a", 1) == [user("2"), REPLY]
    assert await store_memory.truncate("a", 1) == [REPLY]
    assert await store_memory.get_messages("a") == [user("1")]
    assert [s.session_id for s in await store_memory.list_sessions(metadata={"team": "x"})] == ["b"]
    assert {s.session_id for s in await store_memory.list_sessions()} == {"a", "b"}
    done: list[int] = []
    assert await store_memory.prune(keep_last=0, progress=done.append) == 2
    assert sum(done) == 2


async def _two_sessions(memory: StoreMemory) -> None:
    await memory.add_messages("a", [user("for a"), REPLY])
    await memory.add_messages("b", [user("für b ✓")])
    await memory.update_metadata("b", {"k": "v"})


async def test_export_and_import_through_the_memory_with_paths(
    store_memory: StoreMemory, store_kind: str, store_factory: Any, tmp_path: Path
) -> None:
    await _two_sessions(store_memory)
    path = tmp_path / "sessions.jsonl"
    written: list[int] = []
    assert await store_memory.export_jsonl(path, progress=written.append) == 2
    assert written == [1, 1]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text(encoding="utf-8").count('"type":"session"') == 2
    copy = StoreMemory(store_factory(store_kind))
    read: list[int] = []
    assert await copy.import_jsonl(str(path), progress=read.append) == 2  # a str is a path
    assert read == [1, 1]
    for session_id in ("a", "b"):
        assert await copy.get_messages(session_id) == await store_memory.get_messages(session_id)
    assert (await copy.session_info("b")).metadata == {"k": "v"}  # type: ignore[union-attr]
    # Exporting again replaces the file whole: just the one session asked for now.
    assert await store_memory.export_jsonl(str(path), session_ids=["a"]) == 1
    assert path.read_text(encoding="utf-8").count('"type":"session"') == 1
    assert await copy.import_jsonl(path, on_conflict="replace") == 1


async def test_export_and_import_through_the_memory_with_open_files(
    store_memory: StoreMemory, store_kind: str, store_factory: Any, tmp_path: Path
) -> None:
    await _two_sessions(store_memory)
    buffer = io.StringIO()
    assert await store_memory.export_jsonl(buffer, session_ids=["b", "a"]) == 2
    path = tmp_path / "opened.jsonl"
    with path.open("w", encoding="utf-8") as fp:
        assert await store_memory.export_jsonl(fp, session_ids=["b", "a"]) == 2
    assert path.read_text(encoding="utf-8") == buffer.getvalue()
    copy = StoreMemory(store_factory(store_kind))
    with path.open(encoding="utf-8") as fp:
        assert await copy.import_jsonl(fp) == 2
    assert await copy.import_jsonl(buffer.getvalue().splitlines(True), on_conflict="skip") == 0
    assert await copy.get_messages("b") == [user("für b ✓")]


async def test_a_window_is_contiguous_when_an_exchange_began_before_it(
    store_memory: StoreMemory,
) -> None:
    # An approval answered a turn later: its request is older than every window here
    # but the last, so no window may hold the answer, nor skip it and keep what is older.
    request = {"type": "mcp_approval_request", "id": "r1", "name": "t", "server_label": "s"}
    answer = {"type": "mcp_approval_response", "approval_request_id": "r1", "approve": True}
    history = [request, user("approve?"), user("yes"), answer, REPLY]
    await store_memory.add_messages("s", history)
    for limit in range(1, 5):
        assert await store_memory.get_messages("s", limit=limit) == [REPLY], limit
    assert await store_memory.get_messages("s", limit=5) == history
