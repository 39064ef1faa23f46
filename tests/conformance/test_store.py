"""What every blocking Store promises, called from plain threads with no event loop."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentsession import SessionInfo, StoreClosed


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_get_messages_limit_is_newest_n_oldest_first(store: Any) -> None:
    store.add_messages("s", [user(str(i)) for i in range(6)])
    assert store.get_messages("s", limit=2) == [user("4"), user("5")]
    assert store.get_messages("s") == [user(str(i)) for i in range(6)]


def test_pop_message_returns_newest_until_empty(store: Any) -> None:
    store.add_messages("s", [user("1"), user("2")])
    assert store.pop_message("s") == user("2")
    store.add_messages("s", [user("3")])
    assert store.get_messages("s") == [user("1"), user("3")]
    assert store.pop_message("s") == user("3")
    assert store.pop_message("s") == user("1")
    assert store.pop_message("s") is None
    assert store.pop_message("never") is None


def test_list_sessions_newest_activity_first_with_counts(store: Any) -> None:
    store.add_messages("old", [user("1")])
    store.add_messages("new", [user("1"), user("2")])
    store.add_messages("old", [user("2"), user("3")])
    sessions = store.list_sessions()
    assert [s.session_id for s in sessions] == ["old", "new"]
    assert all(isinstance(s, SessionInfo) for s in sessions)
    assert sessions[0].message_count == 3 and sessions[1].message_count == 2
    assert sessions[0].created_at <= sessions[0].updated_at
    store.clear_session("old")
    assert [s.session_id for s in store.list_sessions()] == ["new"]


@pytest.mark.parametrize(
    ("session_id", "error"),
    [("", ValueError), (None, TypeError), (42, TypeError), (b"id", TypeError)],
)
def test_bad_session_ids_are_refused(store: Any, session_id: Any, error: type) -> None:
    with pytest.raises(error, match="session_id"):
        store.add_messages(session_id, [user("x")])
    with pytest.raises(error, match="session_id"):
        store.get_messages(session_id)
    assert store.list_sessions() == []


@pytest.mark.parametrize(
    ("limit", "error"), [(-1, ValueError), ("3", TypeError), (True, TypeError)]
)
def test_bad_limits_are_refused(store: Any, limit: Any, error: type) -> None:
    with pytest.raises(error, match="limit"):
        store.get_messages("s", limit=limit)


@pytest.mark.parametrize(
    "messages",
    ["not a list", [user("ok"), "a string"], [user("ok"), {"content": {1, 2}}], [{1: "int key"}]],
    ids=["str", "str-item", "set-value", "int-key"],
)
def test_bad_messages_raise_type_error_and_store_nothing(store: Any, messages: Any) -> None:
    with pytest.raises(TypeError, match="message"):
        store.add_messages("s", messages)
    assert store.get_messages("s") == []
    assert store.list_sessions() == []


def test_threads_adding_at_once_keep_every_batch_whole(store: Any) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for batch in range(25):
                store.add_messages("shared", [user(f"{n}:{batch}:{i}") for i in range(2)])
                store.add_messages(f"own-{n}", [user(str(batch))])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    texts = [m["content"] for m in store.get_messages("shared")]
    assert len(texts) == 8 * 25 * 2
    for i in range(0, len(texts), 2):
        assert texts[i].endswith(":0") and texts[i + 1] == texts[i][:-1] + "1"
    for n in range(8):
        assert store.get_messages(f"own-{n}") == [user(str(b)) for b in range(25)]


def test_use_after_close_raises_store_closed(store: Any) -> None:
    store.add_messages("s", [user("1")])
    store.close()
    store.close()
    with pytest.raises(StoreClosed):
        store.get_messages("s")
    with pytest.raises(StoreClosed):
        store.add_messages("s", [user("2")])


def test_a_limit_larger_than_a_short_session_returns_it_once(store: Any) -> None:
    store.add_messages("s", [user("1"), user("2"), user("3")])
    for limit in (3, 4, 5, 100):
        assert store.get_messages("s", limit=limit) == [user("1"), user("2"), user("3")]


def test_every_limit_returns_a_tool_safe_window(store: Any) -> None:
    def call(call_id: str) -> dict[str, Any]:
        return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}

    def output(call_id: str) -> dict[str, Any]:
        return {"type": "function_call_output", "call_id": call_id, "output": "x"}

    history = [
        user("q1"),
        {"type": "reasoning", "id": "r", "summary": []},
        call("a"),
        call("b"),
        output("a"),
        output("b"),
        user("q2"),
        call("c"),
        output("c"),
    ]
    store.add_messages("s", history)
    for limit in range(1, len(history) + 1):
        window = store.get_messages("s", limit=limit)
        calls = {i["call_id"] for i in window if i.get("type") == "function_call"}
        outputs = {i["call_id"] for i in window if i.get("type") == "function_call_output"}
        assert calls == outputs, (limit, window)
        assert window == history[len(history) - len(window) :] or window[0] != history[2]
        assert len(window) <= limit
    assert store.get_messages("s") == history  # nothing was deleted
