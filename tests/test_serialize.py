"""Stored JSON text reads back exactly what was stored, and a corrupt row never hides the
others (``agentsession._serialize``)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsession._serialize import MAX_DEPTH, decode_messages, encode_and_copy, encode_messages

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=8), _JSON, max_size=5), max_size=5))
def test_what_is_encoded_decodes_identical(messages: list[dict[str, Any]]) -> None:
    texts = encode_messages(messages)
    decoded = decode_messages(list(enumerate(texts)), "s")
    assert decoded == messages
    # Floats come back as floats and integers as integers, however large.
    assert json.dumps(decoded, sort_keys=True) == json.dumps(messages, sort_keys=True)


def test_rows_the_fast_decoder_refuses_still_read_back() -> None:
    rows = [
        (1, '{"big": 123456789012345678901234567890}'),
        (2, '{"lone": "\\ud800"}'),  # a lone surrogate, stored as its escape
        (3, ' {"spaced" : [1, 2.5, -0.0, 1e-300]} '),
    ]
    assert decode_messages(rows, "s") == [
        {"big": 123456789012345678901234567890},
        {"lone": "\ud800"},
        {"spaced": [1, 2.5, -0.0, 1e-300]},
    ]


def test_corrupt_rows_are_skipped_with_a_warning_and_the_others_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [(1, '{"a": 1}'), (2, '{"a": '), (3, "[1, 2]"), (4, '"text"'), (5, '{"b": 2}')]
    with caplog.at_level(logging.WARNING, logger="agentsession"):
        assert decode_messages(rows, "session 's'") == [{"a": 1}, {"b": 2}]
    skipped = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert skipped == [f"skipping corrupt stored message {key} in session 's'" for key in (2, 3, 4)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=8), _JSON, max_size=5), max_size=5))
def test_copies_are_what_the_texts_read_back_and_share_nothing(
    messages: list[dict[str, Any]],
) -> None:
    texts, copies = encode_and_copy(messages)
    assert copies == decode_messages(list(enumerate(texts)), "s") == messages
    for copy, message in zip(copies, messages, strict=True):
        assert copy is not message
        copy["added"] = True
        assert "added" not in message


def _nested(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return {"deep": value}


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        ((1, 2), "(1, 2)"),
        ({1: "one"}, "1"),
        ({None: "none"}, "None as a key"),
        (b"bytes", "b'bytes'"),
        ({"a", "b"}, "set"),
        (_nested(MAX_DEPTH + 1)["deep"], f"deeper than {MAX_DEPTH}"),
    ],
)
def test_a_value_that_would_not_read_back_identical_is_refused_by_name(
    bad: Any, named: str
) -> None:
    # The first message is fine; the second holds the bad value beside good ones.
    messages = [{"role": "user", "content": "hi"}, {"role": "user", "content": ["ok", bad]}]
    with pytest.raises(TypeError, match=r"^message 1 is not JSON-serializable") as caught:
        encode_and_copy(messages)
    assert named in str(caught.value)


def test_the_deepest_allowed_message_and_lone_surrogates_are_stored() -> None:
    messages = [
        _nested(MAX_DEPTH - 1),
        {"lone": "\ud800 and \U0001f600"},
        {"big": 10**30},
        {"output": "[" * 400 + "{" * 400, "nested": [[[{"a": []}]]] * 100},  # many brackets
    ]
    texts, copies = encode_and_copy(messages)
    assert copies == messages
    assert "\\ud800" in texts[1]  # an escape: UTF-8 cannot hold the surrogate itself
    assert [json.loads(text) for text in texts] == messages
    assert decode_messages(list(enumerate(texts)), "s") == messages


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 5])
def test_depth_is_judged_the_same_whatever_the_brackets_around_it(depth: int) -> None:
    # Many brackets elsewhere in the message (inside a string, in shallow lists) must
    # neither let a too-deep value through nor refuse one deep enough.
    message = {"text": "[" * 300, "wide": [[1]] * 300, **_nested(depth)}
    allowed = depth <= MAX_DEPTH - 1
    if allowed:
        assert encode_and_copy([message])[1] == [message]
    else:
        with pytest.raises(TypeError, match=f"deeper than {MAX_DEPTH}"):
            encode_and_copy([message])
