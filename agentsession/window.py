"""History windows that never break a tool exchange.

The model API rejects input in which a tool's output has lost its call, a call has lost
its output, or a reasoning item has lost the item it precedes. Cutting a long history at
an arbitrary point does exactly that, so every window agentsession returns is made
*tool-safe*: it is a contiguous run of the newest items that starts where no exchange is
cut in two (parallel calls and their outputs are one exchange, kept or left out whole),
minus any pair member whose partner is missing from the history altogether. Windows only
select; nothing stored is deleted.
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


def _pair_spans(keys: Sequence[tuple[str, str] | None]) -> list[tuple[int, int]]:
    """``(first, last)`` index of each call id that has both a call and an output in
    ``keys``, sorted. Parallel calls (several calls, then their outputs) give spans that
    overlap, so a start moved past one lands in the next: the exchange goes whole."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    kinds: dict[str, set[str]] = {}
    for index, key in enumerate(keys):
        if key is not None:
            first.setdefault(key[1], index)
            last[key[1]] = index
            kinds.setdefault(key[1], set()).add(key[0])
    return sorted((first[name], last[name]) for name, found in kinds.items() if len(found) == 2)


def tool_safe_tail(items: Sequence[Item], start: int, *, whole: bool = True) -> list[Item]:
    """Return the newest items from ``start`` on, made tool-safe: a contiguous suffix.

    The start moves forward, never back, until no exchange is cut: past every tool
    exchange that began before it (parallel calls and their outputs are one exchange,
    kept whole or left out whole), and past an item whose reasoning item was cut off.
    The result is then ``tool_safe``: a pair member whose partner is missing from
    ``items`` altogether (damaged history) is dropped, as the model API demands.

    Args:
        items: the history, oldest first.
        start: the index the window would start at (clamped to ``0..len(items)``).
        whole: ``items`` is the session's whole history. A store that read only the
            newest rows passes ``False``: an output whose call is not in ``items`` is
            then taken to be cut off from its call (the start moves past it), not
            damaged, so the window stays a contiguous run of the stored history.
    """
    start = min(max(0, start), len(items))
    keys = [_call_key(item) for item in items]
    spans = _pair_spans(keys)
    if not whole:
        calls = {key[1] for key in keys if key is not None and key[0] == "call"}
        # Its call was stored before the rows read: the exchange began before them.
        spans = [
            (-1, index)
            for index, key in enumerate(keys)
            if key is not None and key[0] == "output" and key[1] not in calls
        ] + spans
    moved = True
    while moved:  # until neither rule moves the start; it only ever moves forward
        moved = False
        while 0 < start < len(items) and _is_reasoning(items[start - 1]):
            start += 1
        for low, high in spans:
            if low < start <= high:
                start, moved = high + 1, True
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
