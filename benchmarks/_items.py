"""Realistic Responses-API items, deterministic, generated once and reused.

A turn adds two items, as the issue's workloads do: usually the user's message and the
assistant's reply; every fifth turn instead a function call and its output (the tool round
inside a turn). Text lengths follow a chat assistant's: short questions, longer answers,
tool outputs in between; a few carry non-ASCII text.
"""

from __future__ import annotations

import json
import random
from typing import Any

__all__ = ("Item", "encoded_pool", "tagged_turn", "turn_items", "turn_pool")

Item = dict[str, Any]

_WORDS = (
    "the order shipped yesterday and should arrive within three business days please "
    "check tracking number invoice refund policy weather forecast in Paris tomorrow "
    "meeting notes summary of the quarterly report revenue grew twelve percent while "
    "costs stayed flat café naïve résumé 東京 données météo I can help with that here "
    "is what I found according to the documentation the function returns a list"
).split()

_POOL_SIZE = 64
_TOOL_EVERY = 5


def _text(rng: random.Random, low: int, high: int) -> str:
    target = rng.randint(low, high)
    words: list[str] = []
    size = 0
    while size < target:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words).capitalize() + "."


def _ident(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("0123456789abcdef") for _ in range(24))


def _user(rng: random.Random) -> Item:
    return {"content": _text(rng, 40, 400), "role": "user"}


def _assistant(rng: random.Random) -> Item:
    return {
        "id": _ident(rng, "msg_"),
        "content": [
            {
                "annotations": [],
                "text": _text(rng, 200, 1500),
                "type": "output_text",
                "logprobs": [],
            }
        ],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    }


def _tool_round(rng: random.Random) -> list[Item]:
    call_id = _ident(rng, "call_")
    city = rng.choice(["Paris", "Tokyo", "Lima", "Oslo", "Cairo"])
    return [
        {
            "arguments": json.dumps({"city": city, "units": "metric"}),
            "call_id": call_id,
            "name": "get_weather",
            "type": "function_call",
            "id": _ident(rng, "fc_"),
            "status": "completed",
        },
        {"call_id": call_id, "output": _text(rng, 100, 800), "type": "function_call_output"},
    ]


def _make_pool(seed: int = 5) -> list[list[Item]]:
    rng = random.Random(seed)
    pool: list[list[Item]] = []
    for index in range(_POOL_SIZE):
        if index % _TOOL_EVERY == _TOOL_EVERY - 1:
            pool.append(_tool_round(rng))
        else:
            pool.append([_user(rng), _assistant(rng)])
    return pool


_POOL = _make_pool()


def turn_pool() -> list[list[Item]]:
    """The distinct two-item turns, in order (turn ``i`` is ``pool[i % len(pool)]``)."""
    return _POOL


def turn_items(turn: int) -> list[Item]:
    """The two items added at ``turn`` (the same for every system)."""
    return _POOL[turn % len(_POOL)]


def tagged_turn(writer: int, turn: int) -> list[Item]:
    """Two items whose user message names ``(writer, turn)``, to check order afterwards."""
    user, assistant = _POOL[turn % (_TOOL_EVERY - 1)]
    return [{**user, "content": f"[{writer}:{turn}] {user['content']}"}, assistant]


def encoded_pool() -> list[str]:
    """Every pool item as compact JSON text, for bulk-building large databases."""
    return [
        json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        for turn in _POOL
        for item in turn
    ]
