"""Tool-safe history windows: what a model is sent is never a broken tool exchange."""

from __future__ import annotations

from typing import Any

import pytest

from agentsession import HistoryWindow
from agentsession.window import tool_safe, tool_safe_tail


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def output(call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": "ok"}


def reasoning(rid: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": rid, "summary": []}


# A history with a reasoning step, parallel calls, and a hosted tool call.
HISTORY = [
    user("u1"),
    reasoning("r1"),
    call("a"),
    call("b"),
    output("a"),
    output("b"),
    assistant("done 1"),
    user("u2"),
    {"type": "web_search_call", "id": "ws1", "status": "completed"},
    assistant("done 2"),
    user("u3"),
    call("c"),
    output("c"),
    assistant("done 3"),
]


def pairing_problems(items: list[dict[str, Any]]) -> list[str]:
    """What the model API would reject in ``items``."""
    problems = []
    calls = [i["call_id"] for i in items if i.get("type") == "function_call"]
    outputs = [i["call_id"] for i in items if i.get("type") == "function_call_output"]
    problems += [f"output without call {c}" for c in outputs if c not in calls]
    problems += [f"call without output {c}" for c in calls if c not in outputs]
    for before, after in zip(items, items[1:] + [{}], strict=False):
        if before.get("type") == "reasoning" and not after:
            problems.append("reasoning at the end")
    for index, item in enumerate(items):
        original = HISTORY.index(item) if item in HISTORY else -1
        if original > 0 and index == 0 and HISTORY[original - 1].get("type") == "reasoning":
            problems.append(f"{item.get('type')} lost its reasoning item")
    return problems


@pytest.mark.parametrize("start", range(len(HISTORY) + 1))
def test_every_cut_of_the_history_is_made_whole(start: int) -> None:
    window = tool_safe_tail(HISTORY, start)
    assert pairing_problems(window) == []
    # Only items from the cut are kept, in order, and whole exchanges inside it survive.
    assert window == [item for item in HISTORY[start:] if item in window]
    if start <= HISTORY.index(call("c")):
        assert call("c") in window and output("c") in window


def test_tool_safe_keeps_parallel_pairs_and_drops_orphans() -> None:
    items = [output("x"), call("a"), call("b"), output("b"), output("a"), call("late")]
    assert tool_safe(items) == [call("a"), call("b"), output("b"), output("a")]


def test_reasoning_goes_with_the_item_it_precedes() -> None:
    items = [user("q"), reasoning("r1"), reasoning("r2"), call("gone"), assistant("a")]
    assert tool_safe(items) == [user("q"), assistant("a")]
    kept = [user("q"), reasoning("r1"), call("k"), output("k")]
    assert tool_safe(kept) == kept


def test_max_items_max_turns_and_max_tokens() -> None:
    assert HistoryWindow(max_items=4).select(HISTORY) == [
        user("u3"),
        call("c"),
        output("c"),
        assistant("done 3"),
    ]
    assert HistoryWindow(max_items=2).select(HISTORY) == [assistant("done 3")]
    two_turns = HistoryWindow(max_turns=2).select(HISTORY)
    assert two_turns[0] == user("u2") and two_turns[-1] == assistant("done 3")
    assert HistoryWindow(max_turns=10).select(HISTORY) == HISTORY

    def one_each(item: dict[str, Any]) -> int:
        return 1

    assert HistoryWindow(max_tokens=3, count_tokens=one_each).select(HISTORY) == [
        call("c"),
        output("c"),
        assistant("done 3"),
    ]
    # Two tokens would cut the exchange: its output goes too.
    assert HistoryWindow(max_tokens=2, count_tokens=one_each).select(HISTORY) == [
        assistant("done 3")
    ]
    assert HistoryWindow(max_turns=2, max_items=3).select(HISTORY) == [
        call("c"),
        output("c"),
        assistant("done 3"),
    ]
    assert HistoryWindow().select(HISTORY) == HISTORY


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_items": 0}, ValueError),
        ({"max_turns": -1}, ValueError),
        ({"max_tokens": "100"}, TypeError),
        ({"max_items": True}, TypeError),
        ({"count_tokens": 5}, TypeError),
    ],
)
def test_bad_windows_are_refused(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        HistoryWindow(**kwargs)
