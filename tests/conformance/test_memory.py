"""What every SessionMemory promises, through the async protocol and the SDK Session."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

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
