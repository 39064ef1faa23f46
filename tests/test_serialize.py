"""Stored JSON text reads back exactly what was stored, and a corrupt row never hides the
others (``agentsession._serialize``)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsession._serialize import decode_messages, encode_messages

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
