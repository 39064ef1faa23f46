"""Tool-safe history windows: what a model is sent is never a broken tool exchange."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    # The newest items, contiguous and in order; whole exchanges inside the cut survive.
    assert window == HISTORY[len(HISTORY) - len(window) :]
    assert len(window) <= len(HISTORY) - start
    if start <= HISTORY.index(call("c")):
        assert call("c") in window and output("c") in window


PARALLEL = [call("c3"), call("c4"), call("c5"), output("c3"), output("c4"), output("c5")]


def test_parallel_calls_are_one_exchange_kept_or_left_out_whole() -> None:
    items = [*PARALLEL, assistant("reply")]
    # A cut anywhere inside the exchange leaves all of it out, not its last pair.
    for limit in range(1, 7):
        assert tool_safe_tail(items, len(items) - limit) == [assistant("reply")]
        assert HistoryWindow(max_items=limit).select(items) == [assistant("reply")]
    assert tool_safe_tail(items, 0) == items
    assert HistoryWindow(max_items=7).select(items) == items


def test_outputs_in_another_order_than_their_calls_still_form_one_exchange() -> None:
    items = [user("q"), call("a"), call("b"), output("b"), output("a"), assistant("done")]
    for start in (2, 3, 4):
        assert tool_safe_tail(items, start) == [assistant("done")]
    assert tool_safe_tail(items, 1) == items[1:]


def test_damaged_pairs_are_dropped_and_the_rest_stays_contiguous() -> None:
    # An output whose call was never stored and a call never answered.
    items = [user("q"), output("lost"), assistant("a"), call("unanswered"), user("q2")]
    assert tool_safe_tail(items, 0) == [user("q"), assistant("a"), user("q2")]
    assert tool_safe_tail(items, 1) == [assistant("a"), user("q2")]


def test_newest_rows_only_treat_an_output_without_its_call_as_cut_off() -> None:
    # What a store reads for limit=4 of [call c3, user, call c4, output c3, output c4,
    # reply]: one row more than the window, and c3's call is older than both.
    newest = [user("mid"), call("c4"), output("c3"), output("c4"), assistant("reply")]
    assert tool_safe_tail(newest, 1, whole=False) == [assistant("reply")]
    # Read as the whole history, output c3 would be damage and the rest kept.
    assert tool_safe_tail(newest, 1) == [call("c4"), output("c4"), assistant("reply")]


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


# -- property: every window of any history is a tool-safe, contiguous suffix --------------


def _numbered(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` made distinct (an ``n`` each), so equality tells them apart."""
    return [{**item, "n": n} for n, item in enumerate(items)]


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Turns of messages, reasoning, hosted calls, single and parallel tool exchanges
    (outputs in any order), approval pairs, and damage: lost calls and lost outputs."""
    items: list[dict[str, Any]] = []
    ids = iter(range(10**6))
    for block in draw(st.lists(st.integers(0, 7), max_size=12)):
        if block == 0:
            items.append(user("u"))
        elif block == 1:
            items.append(assistant("a"))
        elif block == 2:
            items.append(reasoning("r"))
        elif block == 3:
            items.append({"type": "web_search_call", "id": "ws", "status": "completed"})
        elif block == 4:
            names = [f"c{next(ids)}" for _ in range(draw(st.integers(1, 3)))]
            if draw(st.booleans()):
                items.append(reasoning("r"))
            items += [call(name) for name in names]
            items += [output(name) for name in draw(st.permutations(names))]
        elif block == 5:
            request = f"mcpr{next(ids)}"
            items.append({"type": "mcp_approval_request", "id": request, "name": "t"})
            if draw(st.booleans()):
                items.append(user("between"))
            items.append({"type": "mcp_approval_response", "approval_request_id": request})
        elif block == 6:
            items.append(output(f"lost{next(ids)}"))  # its call was never stored
        else:
            items.append(call(f"unanswered{next(ids)}"))
    return _numbered(items)


def _partner(item: dict[str, Any]) -> str | None:
    kind = item.get("type")
    if kind in ("function_call", "function_call_output"):
        return str(item["call_id"])
    if kind == "mcp_approval_request":
        return str(item["id"])
    if kind == "mcp_approval_response":
        return str(item["approval_request_id"])
    return None


def _clean_cut(items: list[dict[str, Any]], cut: int) -> bool:
    """Whether ``items[cut:]`` splits no exchange and keeps every reasoning partner."""
    if 0 < cut < len(items) and items[cut - 1].get("type") == "reasoning":
        return False
    positions: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        partner = _partner(item)
        if partner is not None:
            positions.setdefault(partner, []).append(index)
    # Every id is unique to one exchange, so two positions are a call and its output.
    return not any(len(p) == 2 and p[0] < cut <= p[1] for p in positions.values())


@given(histories(), st.data())
def test_every_window_is_a_tool_safe_suffix_of_the_undamaged_history(
    items: list[dict[str, Any]], data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, len(items)))
    window = tool_safe_tail(items, start)
    undamaged = tool_safe(items)
    assert len(window) <= len(items) - start
    assert window == undamaged[len(undamaged) - len(window) :]  # contiguous, the newest
    assert tool_safe(window) == window  # nothing the model API would reject
    positions = [items.index(item) for item in window]
    for position in positions:  # no item has lost the reasoning item before it
        if position > 0 and items[position - 1].get("type") == "reasoning":
            assert items[position - 1] in window
    # And it is the longest such window: it starts at the first clean cut from ``start``.
    first = next(cut for cut in range(start, len(items) + 1) if _clean_cut(items, cut))
    assert window == tool_safe(items[first:])
    if start < len(items):
        assert HistoryWindow(max_items=len(items) - start).select(items) == window
