"""Compaction: a session's oldest turns replaced by one summary item, the originals archived.

What every engine and the memory share: the summary item and how to recognise it, where a
compaction cuts a history (never inside a tool exchange), what the summary model is asked,
and the stored form of a ``CompactionRecord``. See ``docs/compaction.md``.

The summary item is a ``system`` message whose text starts with ``SUMMARY_PREFIX``: context
the model reads, never a user message, so it never starts a turn (``rewind`` and
``HistoryWindow(max_turns=...)`` count turns from user messages).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._serialize import message_text
from .protocol import CompactionRecord
from .window import _call_key, _is_reasoning, approximate_tokens

__all__ = (
    "DEFAULT_INSTRUCTIONS",
    "REQUEST_HEAD",
    "SUMMARY_PREFIX",
    "Compaction",
    "compaction_cut",
    "is_summary",
    "summary_item",
    "summary_request",
    "summary_text",
)

Item = dict[str, Any]

#: How every summary item's text starts: the mark that tells it from any other message.
SUMMARY_PREFIX = "[agentsession summary of earlier conversation] "

#: The instructions the summary model gets unless ``instructions=`` says otherwise.
DEFAULT_INSTRUCTIONS = (
    "You summarise conversations between a user and an assistant so the assistant can "
    "continue them without the original messages. Keep every fact, name, number, "
    "decision, open question and the user's preferences; say what tools returned. Write "
    "plain prose, no preamble."
)

#: How the request sent to the summary model starts (the offline model looks for it).
REQUEST_HEAD = "Summarise this conversation of"


@dataclass(frozen=True)
class Compaction:
    """Automatic compaction for ``RunConfig(compaction=...)``: before a run, compact the
    session when the history the model would be sent holds more than about
    ``max_tokens`` tokens (counted as ``HistoryWindow`` counts them).

    Attributes:
        max_tokens: compact above this many tokens (1 or more).
        keep_turns: the newest turns kept as they are (1 or more).
        model: writes the summary: an SDK ``Model``, a model name for the default
            provider, or an ``Agent`` (``None``: the SDK's default model).
        instructions: the summary model's instructions (``None``: ``DEFAULT_INSTRUCTIONS``).

    Raises:
        TypeError, ValueError: a bad limit (named).
    """

    max_tokens: int
    keep_turns: int = 2
    model: Any = None
    instructions: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_tokens", "keep_turns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.instructions is not None and not isinstance(self.instructions, str):
            raise TypeError(f"instructions must be a str or None, got {self.instructions!r:.80}")


def summary_item(summary: str) -> Item:
    """The item a compaction puts in front of the kept turns."""
    return {"type": "message", "role": "system", "content": SUMMARY_PREFIX + summary}


def is_summary(item: Mapping[str, Any]) -> bool:
    """Whether ``item`` is a compaction's summary item."""
    content = item.get("content")
    return (
        item.get("role") == "system"
        and item.get("type", "message") == "message"
        and isinstance(content, str)
        and content.startswith(SUMMARY_PREFIX)
    )


def summary_text(item: Mapping[str, Any]) -> str:
    """The summary's text of a summary item (its content without ``SUMMARY_PREFIX``)."""
    content = str(item.get("content", ""))
    return content[len(SUMMARY_PREFIX) :] if content.startswith(SUMMARY_PREFIX) else content


def _is_turn_start(item: Item) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def compaction_cut(items: Sequence[Item], keep_turns: int) -> int:
    """How many of the oldest ``items`` a compaction keeping ``keep_turns`` turns archives.

    The kept part starts at the ``keep_turns``-th user message from the end, moved back
    (keeping more) until no tool exchange and no reasoning item is cut in two. 0 when the
    history holds no more than ``keep_turns`` turns (nothing to compact).
    """
    starts = [index for index, item in enumerate(items) if _is_turn_start(item)]
    if len(starts) <= keep_turns:
        return 0
    cut = starts[-keep_turns]
    keys = [_call_key(item) for item in items]
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key is not None:
            first.setdefault(key[1], index)
            last[key[1]] = index
    moved = True
    while moved and cut > 0:
        moved = False
        while cut > 0 and _is_reasoning(items[cut - 1]):
            cut, moved = cut - 1, True
        for name, low in first.items():
            if low < cut <= last[name]:
                cut, moved = low, True
    return cut


def is_cut_safe(items: Sequence[Item], cut: int) -> bool:
    """Whether archiving the oldest ``cut`` items splits no tool exchange or reasoning."""
    if cut == 0 or cut >= len(items):
        return True
    if _is_reasoning(items[cut - 1]):
        return False
    before = {key[1] for key in map(_call_key, items[:cut]) if key is not None}
    after = {key[1] for key in map(_call_key, items[cut:]) if key is not None}
    return not (before & after)


def _line(item: Item) -> str:
    kind = item.get("type", "message")
    if kind == "message":
        return f"{item.get('role', 'unknown')}: {message_text(item)}"
    if kind.endswith("_call_output"):
        return f"tool output ({item.get('call_id', '')}): {message_text(item)}"
    if kind.endswith("_call"):
        return f"tool call {item.get('name', kind)}({item.get('arguments', '')})"
    text = message_text(item)
    return f"{kind}: {text}" if text else kind


def summary_request(items: Sequence[Item]) -> str:
    """The user message the summary model gets: the archived items as a transcript."""
    lines = "\n".join(_line(item) for item in items)
    return f"{REQUEST_HEAD} {len(items)} items:\n\n{lines}"


def count_tokens(items: Sequence[Item]) -> int:
    """About how many tokens ``items`` hold, as ``HistoryWindow`` counts them."""
    return sum(approximate_tokens(item) for item in items)


def dump_record(record: CompactionRecord) -> str:
    """The stored form of a record: every field but ``session_id`` and ``summary`` (the
    summary is the stored summary item, encrypted with the messages on such a store)."""
    return json.dumps(
        {
            "compacted_items": record.compacted_items,
            "kept_items": record.kept_items,
            "tokens_before": record.tokens_before,
            "tokens_after": record.tokens_after,
            "created_at": record.created_at.timestamp(),
            "model": record.model,
        },
        separators=(",", ":"),
    )


def dump_compaction_fields(fields: dict[str, Any]) -> str:
    """``dump_record``'s text of an exported record's fields, checked.

    Raises:
        KeyError: a field is missing (named).
        TypeError, ValueError: a field of the wrong type or range (named).
    """
    counts = {}
    for name in ("compacted_items", "kept_items", "tokens_before", "tokens_after"):
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} {value!r}")
        counts[name] = value
    created = fields["created_at"]
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise ValueError(f"created_at {created!r}")
    model = fields["model"]
    if not isinstance(model, str):
        raise ValueError(f"model {model!r}")
    return json.dumps(
        {**counts, "created_at": float(created), "model": model}, separators=(",", ":")
    )


def load_record(session_id: str, stored: str, summary: Item) -> CompactionRecord:
    """A record from ``dump_record``'s text and its summary item."""
    fields = json.loads(stored)
    return CompactionRecord(
        session_id=session_id,
        compacted_items=int(fields["compacted_items"]),
        kept_items=int(fields["kept_items"]),
        summary=summary_text(summary),
        tokens_before=int(fields["tokens_before"]),
        tokens_after=int(fields["tokens_after"]),
        created_at=datetime.fromtimestamp(float(fields["created_at"]), timezone.utc),
        model=str(fields["model"]),
    )
