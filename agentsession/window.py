"""History windows that never break a tool exchange.

The model API rejects input in which a tool's output has lost its call, a call has lost
its output, or a reasoning item has lost the item it precedes. Cutting a long history at
an arbitrary point does exactly that, so every window agentsession returns is made
*tool-safe*: it starts where no exchange is cut in two, and drops any pair member whose
partner is missing. Windows only select; nothing stored is deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ("HistoryWindow", "approximate_tokens", "tool_safe", "tool_safe_tail")

Item = dict[str, Any]


def _call_key(item: Item) -> tuple[str, str] | None:
    """``("call", id)`` for a tool call that needs an output, ``("output", id)`` for an
    output, ``None`` for anything else (messages, reasoning, hosted tool calls)."""
    kind = item.get("type")
    if not isinstance(kind, str):
        return None
    if kind == "mcp_approval_request":
        return ("call", str(item.get("id")))
    if kind == "mcp_approval_response":
        return ("output", str(item.get("approval_request_id")))
    call_id = item.get("call_id")
    if call_id is None:
        return None  # hosted tools (web_search_call, mcp_call, ...) carry their own result
    if kind.endswith("_call_output"):
        return ("output", str(call_id))
    if kind.endswith("_call"):
        return ("call", str(call_id))
    return None


def _is_reasoning(item: Item) -> bool:
    return item.get("type") == "reasoning"


def tool_safe(items: Sequence[Item]) -> list[Item]:
    """Return ``items`` without the members of any tool exchange that is not whole.

    A call whose output is absent, an output whose call is absent, and a reasoning item
    that is not followed by a kept item are left out; everything else keeps its order.
    Parallel calls are handled pair by pair.
    """
    keys = [_call_key(item) for item in items]
    calls = {key[1] for key in keys if key is not None and key[0] == "call"}
    outputs = {key[1] for key in keys if key is not None and key[0] == "output"}
    keep = [
        key is None or (key[1] in outputs if key[0] == "call" else key[1] in calls) for key in keys
    ]
    # A reasoning item belongs to the item after it (after any further reasoning items).
    following_kept = False
    for index in range(len(items) - 1, -1, -1):
        if _is_reasoning(items[index]):
            keep[index] = following_kept
        else:
            following_kept = keep[index]
    return [item for item, kept in zip(items, keep, strict=True) if kept]


def tool_safe_tail(items: Sequence[Item], start: int) -> list[Item]:
    """Return ``items[start:]`` made tool-safe, given the item just before it.

    An item whose reasoning item was cut off (``items[start - 1]`` is reasoning) is
    dropped with it, then the rest is made whole by ``tool_safe``.
    """
    start = max(0, start)
    while 0 < start < len(items) and _is_reasoning(items[start - 1]):
        start += 1
    return tool_safe(items[start:])


def approximate_tokens(item: Item) -> int:
    """About how many tokens ``item`` costs: its JSON length / 4, at least 1."""
    return max(1, len(json.dumps(item, ensure_ascii=False)) // 4)


def _is_user_message(item: Item) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


@dataclass(frozen=True)
class HistoryWindow:
    """How much of a session's history a run sends to the model.

    Every limit that is set applies; the window is the newest part of the history that
    satisfies all of them, made tool-safe. With nothing set, the whole history is sent.

    Attributes:
        max_items: at most this many items.
        max_turns: at most this many turns, a turn starting at a user message.
        max_tokens: at most about this many tokens, as counted by ``count_tokens``.
        count_tokens: the token counter for one item (default: JSON length / 4); pass
            a real tokenizer (tiktoken, say) for exact budgets.

    Raises:
        ValueError: a limit is less than 1.
        TypeError: a limit is not an int, or ``count_tokens`` is not callable.
    """

    max_items: int | None = None
    max_turns: int | None = None
    max_tokens: int | None = None
    count_tokens: Callable[[Item], int] = approximate_tokens

    def __post_init__(self) -> None:
        for name in ("max_items", "max_turns", "max_tokens"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int or None, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not callable(self.count_tokens):
            raise TypeError(f"count_tokens must be callable, got {self.count_tokens!r}")

    @property
    def needs_full_history(self) -> bool:
        """Whether choosing the window needs more than the newest ``max_items`` items."""
        return self.max_turns is not None or self.max_tokens is not None

    def select(self, items: Sequence[Item]) -> list[Item]:
        """Return the newest part of ``items`` (oldest first) that fits, made tool-safe."""
        start = 0
        if self.max_items is not None:
            start = max(start, len(items) - self.max_items)
        if self.max_turns is not None:
            user_starts = [i for i, item in enumerate(items) if _is_user_message(item)]
            if len(user_starts) > self.max_turns:
                start = max(start, user_starts[-self.max_turns])
        if self.max_tokens is not None:
            budget = self.max_tokens
            index = len(items)
            while index > start:
                cost = self.count_tokens(items[index - 1])
                if cost > budget:
                    break
                budget -= cost
                index -= 1
            start = index
        return tool_safe_tail(items, start)
