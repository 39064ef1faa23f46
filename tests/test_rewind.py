"""rewind() and truncate(): removing whole turns, and what a failed run is rolled back with."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import STORES


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


TURNS = [
    user("q1"),
    reply("a1"),
    user("q2"),
    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c", "output": "x"},
    reply("a2"),
    user("q3"),
    reply("a3"),
]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, store_factory: Any) -> Any:
    store = store_factory(request.param)
    store.add_messages("s", TURNS)
    return store


def test_rewind_removes_whole_turns_newest_first(store: Any) -> None:
    assert store.rewind("s") == [user("q3"), reply("a3")]
    assert store.rewind("s") == TURNS[2:6]
    assert store.get_messages("s") == TURNS[:2]
    store.add_messages("s", [user("q4")])
    assert store.get_messages("s") == [*TURNS[:2], user("q4")]
    assert store.list_sessions()[0].message_count == 3


def test_rewind_more_turns_than_there_are_empties_the_session(store: Any) -> None:
    assert store.rewind("s", turns=10) == TURNS
    assert store.get_messages("s") == []
    assert store.rewind("s") == [] and store.rewind("unknown") == []


def test_truncate_keeps_the_oldest_n(store: Any) -> None:
    assert store.truncate("s", 3) == TURNS[3:]
    assert store.get_messages("s") == TURNS[:3]
    assert store.truncate("s", 3) == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.rewind("s", turns=0), ValueError),
        (lambda s: s.rewind("s", turns="1"), TypeError),
        (lambda s: s.truncate("s", -1), ValueError),
        (lambda s: s.truncate("", 1), ValueError),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(store: Any, call: Any, error: type) -> None:
    with pytest.raises(error):
        call(store)
    assert store.get_messages("s") == TURNS
