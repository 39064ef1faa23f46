"""Stored items as a conversation: what the session page draws, entry by entry.

Pure functions over the stored messages (Responses API input items); nothing here reads
a store or renders HTML, and every value stays plain text (the templates escape it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..cli.render import text_of
from ..compaction import is_summary, summary_text

__all__ = ("HANDOFF_PREFIX", "Entry", "Segment", "build_transcript", "highlighted")

#: The Agents SDK names a handoff's tool ``transfer_to_<agent>``.
HANDOFF_PREFIX = "transfer_to_"


@dataclass
class Entry:
    """One thing the transcript shows.

    Attributes:
        kind: ``"message"``, ``"summary"`` (a compaction's summary item), ``"tool"``
            (a call, with its output when the page holds it), ``"tool_output"`` (an
            output whose call is on an earlier page), ``"handoff"``, ``"reasoning"`` or
            ``"other"``.
        position: the 1-based position of the entry's first stored item.
        role: the message's role (``kind == "message"``).
        title: the tool's name, the agent handed to, or the other item's type.
        text: message text, reasoning summary, or the item as JSON.
        arguments: a tool call's arguments, as indented JSON when they parse.
        output: the tool's output, or ``None`` when it is not on this page.
        output_position: the output's position, when it is on this page.
    """

    kind: str
    position: int
    role: str = ""
    title: str = ""
    text: str = ""
    arguments: str = ""
    output: str | None = None
    output_position: int | None = None


@dataclass(frozen=True)
class Segment:
    """A piece of a search snippet; ``match`` pieces are the searched words."""

    text: str
    match: bool


def _pretty(arguments: Any) -> str:
    parsed = arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return arguments
    return json.dumps(parsed, ensure_ascii=False, indent=2, default=str)


def _output_text(output: Any) -> str:
    return output if isinstance(output, str) else text_of(output)


def build_transcript(messages: Sequence[Mapping[str, Any]], first: int) -> list[Entry]:
    """The entries for ``messages``, oldest first; ``first`` is the first one's position.

    A tool call's output (matched by ``call_id``) is drawn with its call, so arguments
    and result sit side by side; the output's own place is then skipped.
    """
    entries: list[Entry] = []
    calls: dict[str, Entry] = {}
    for offset, message in enumerate(messages):
        position = first + offset
        kind = message.get("type")
        role = message.get("role")
        if is_summary(message):
            entries.append(Entry("summary", position, role=str(role), text=summary_text(message)))
        elif role is not None and kind in (None, "message"):
            entries.append(
                Entry(
                    "message",
                    position,
                    role=str(role),
                    text=text_of(message.get("content")),
                )
            )
        elif kind == "function_call":
            name = str(message.get("name", "?"))
            entry = Entry(
                "tool",
                position,
                title=name,
                arguments=_pretty(message.get("arguments")),
            )
            if name.startswith(HANDOFF_PREFIX):
                entry.kind = "handoff"
                entry.title = name[len(HANDOFF_PREFIX) :]
            calls[str(message.get("call_id", ""))] = entry
            entries.append(entry)
        elif kind == "function_call_output":
            output = _output_text(message.get("output", ""))
            call = calls.pop(str(message.get("call_id", "")), None)
            if call is not None and call.output is None:
                call.output, call.output_position = output, position
            else:
                entries.append(Entry("tool_output", position, output=output))
        elif kind == "reasoning":
            summary = text_of(message.get("summary")) or "(no summary)"
            entries.append(Entry("reasoning", position, text=summary))
        else:
            fields = {k: v for k, v in message.items() if k not in ("type", "id", "status")}
            title = str(kind or "item").replace("_", " ")
            entries.append(Entry("other", position, title=title, text=_pretty(fields)))
    return entries


def highlighted(snippet: str, marks: tuple[str, str]) -> list[Segment]:
    """``snippet`` cut at the highlight ``marks`` the store put around matched words."""
    start, end = marks
    segments: list[Segment] = []
    rest = snippet
    while rest:
        before, found, after = rest.partition(start)
        if before:
            segments.append(Segment(before, False))
        if not found:
            break
        matched, _, rest = after.partition(end)
        if matched:
            segments.append(Segment(matched, True))
    return segments
