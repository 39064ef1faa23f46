"""Stored messages and sessions as people read them: labeled roles, tool calls with their
arguments and results, and tables of sessions, of their usage and of their runs.

Every function here returns text; colour is added with ``click.style`` (which ``click.echo``
strips when output is not a terminal) unless the ``NO_COLOR`` environment variable is set.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from ..compaction import is_summary, summary_text
from ..protocol import LeaseHolder, RunRecord, SessionInfo, SessionUsage

__all__ = (
    "RESULT_LIMIT",
    "StreamPrinter",
    "dim",
    "format_message",
    "format_transcript",
    "held_by",
    "label",
    "printable",
    "run_to_json",
    "runs_table",
    "session_to_json",
    "sessions_table",
    "table",
    "text_of",
    "tool_call_line",
    "tool_result_line",
    "usage_table",
    "usage_to_json",
    "write",
)

#: Tool results longer than this are shortened in human-readable output.
RESULT_LIMIT = 500

_ROLE_LABELS = {
    "user": "User",
    "assistant": "Assistant",
    "system": "System",
    "developer": "Developer",
}
_ROLE_COLOURS = {"user": "green", "assistant": "cyan"}


#: Characters a terminal acts on instead of showing: C0 controls but newline and tab,
#: DEL, C1 controls, and the bidirectional overrides and isolates (which reorder text).
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_CONTROLS}]")
_CONTROL_OR_BREAK = re.compile(f"[{_CONTROLS}\n\t]")


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character shown as its escape (``\\x1b``, ``\\x00``).

    So stored text or a session id can never send the terminal an escape sequence (one
    that sets its title, say) or hide what follows. With ``lines``, newlines and tabs
    are kept (a message's text); without, they are escaped too (a table cell).
    """
    pattern = _CONTROL if lines else _CONTROL_OR_BREAK
    return pattern.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


def _colour_enabled() -> bool:
    return not os.environ.get("NO_COLOR")


def label(text: str, colour: str | None = None) -> str:
    """``text`` as a bold label (in ``colour``), e.g. ``"Assistant:"``."""
    if not _colour_enabled():
        return text
    return click.style(text, fg=colour, bold=True)


def dim(text: str) -> str:
    """``text`` dimmed, for notes that are not part of the conversation."""
    return click.style(text, dim=True) if _colour_enabled() else text


def _shorten(text: str, limit: int = RESULT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def text_of(content: Any) -> str:
    """The readable text of a message's ``content``: a string, or a list of parts.

    Text parts give their text, a refusal gives ``[refusal] ...``, images and files a
    ``[image]`` / ``[file NAME]`` placeholder.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence):
        return json.dumps(content, ensure_ascii=False)
    pieces: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            pieces.append(str(part))
        elif "text" in part:
            pieces.append(str(part["text"]))
        elif part.get("type") == "refusal":
            pieces.append(f"[refusal] {part.get('refusal', '')}")
        elif part.get("type") in ("input_image", "image"):
            pieces.append("[image]")
        elif part.get("type") in ("input_file", "file"):
            pieces.append(f"[file {part.get('filename') or part.get('file_id') or ''}]".strip())
        else:
            pieces.append(f"[{part.get('type', 'part')}]")
    return "".join(pieces)


def _arguments(arguments: Any) -> str:
    parsed: Any = arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return arguments
    return json.dumps(parsed, ensure_ascii=False, default=str)


def tool_call_line(name: str, arguments: Any) -> str:
    """``Tool call: name({"city": "Paris"})``, the arguments as compact JSON."""
    call = printable(f"{name}({_arguments(arguments)})", lines=True)
    return f"{label('Tool call:', 'yellow')} {call}"


def tool_result_line(output: Any) -> str:
    """``Tool result: ...``, shortened past ``RESULT_LIMIT`` characters."""
    text = output if isinstance(output, str) else text_of(output)
    return f"{label('Tool result:', 'yellow')} {printable(_shorten(text), lines=True)}"


def format_message(message: Mapping[str, Any]) -> str:
    """One stored message (a Responses API input item) as one labeled entry.

    A compaction's summary item is labelled as a summary (``Summary of earlier turns:``).
    Messages of every role get their role as label (``User:``, ``Assistant:``...); a
    function call shows its name and arguments, its output the result; reasoning shows
    its summary; any other item its type and fields as JSON. Control characters are
    escaped (see ``printable``).
    """
    kind = message.get("type")
    role = message.get("role")
    if is_summary(message):  # a compaction's summary: context, not something said
        text = printable(summary_text(message), lines=True)
        return f"{label('Summary of earlier turns:', 'yellow')} {text}"
    if role is not None and kind in (None, "message"):
        name = _ROLE_LABELS.get(str(role), str(role).capitalize())
        text = printable(text_of(message.get("content")), lines=True)
        name = printable(name)
        return f"{label(name + ':', _ROLE_COLOURS.get(str(role)))} {text}"
    if kind == "function_call":
        return tool_call_line(str(message.get("name", "?")), message.get("arguments", ""))
    if kind == "function_call_output":
        return tool_result_line(message.get("output", ""))
    if kind == "reasoning":
        summary = printable(text_of(message.get("summary")), lines=True) or "(no summary)"
        return dim(f"Reasoning: {summary}")
    fields = {key: value for key, value in message.items() if key not in ("type", "id", "status")}
    title = printable(str(kind or "item").replace("_", " ").capitalize())
    text = printable(_shorten(json.dumps(fields, ensure_ascii=False)))
    return f"{label(title + ':')} {text}"


def format_transcript(messages: Iterable[Mapping[str, Any]], *, numbered: bool = False) -> str:
    """Every message, one entry each, oldest first; numbered from 1 if asked."""
    entries = [format_message(message) for message in messages]
    if not numbered:
        return "\n".join(entries)
    width = len(str(len(entries)))
    return "\n".join(
        f"{dim(str(number).rjust(width))}  {entry}" for number, entry in enumerate(entries, 1)
    )


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numbers: set[int]) -> str:
    """A text table: the header in bold, columns two spaces apart, the columns in
    ``numbers`` (indexes) aligned right, the others left."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i in numbers else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines[0] = label(lines[0])
    return "\n".join(lines)


def sessions_table(
    sessions: Sequence[SessionInfo],
    *,
    current: str | None = None,
    tokens: Mapping[str, int] | None = None,
) -> str:
    """A text table of sessions as given (newest activity first): id, messages, created,
    last active (local time). With ``current``, that session is marked with ``*``; with
    ``tokens`` (total tokens by session id), a TOKENS column follows MESSAGES. Ids are
    shown ``printable``.
    """
    header = ["SESSION", "MESSAGES", "CREATED", "LAST ACTIVE"]
    rows = [
        [
            ("* " if info.session_id == current else "  " if current is not None else "")
            + printable(info.session_id),
            str(info.message_count),
            _local(info.created_at),
            _local(info.updated_at),
        ]
        for info in sessions
    ]
    if current is not None:
        header[0] = "  " + header[0]
    numbers = {1}
    if tokens is not None:
        header.insert(2, "TOKENS")
        for info, row in zip(sessions, rows, strict=True):
            row.insert(2, str(tokens.get(info.session_id, 0)))
        numbers.add(2)
    return table(header, rows, numbers=numbers)


def usage_to_json(usage: SessionUsage) -> dict[str, Any]:
    """A session's usage as JSON-ready data; times are ISO 8601 in UTC (or null)."""
    data = asdict(usage)
    for key in ("first_run_at", "last_run_at"):
        moment = getattr(usage, key)
        data[key] = None if moment is None else moment.isoformat()
    return data


def run_to_json(run: RunRecord) -> dict[str, Any]:
    """A run record as JSON-ready data; times are ISO 8601 in UTC."""
    data = asdict(run)
    data["started_at"] = run.started_at.isoformat()
    data["ended_at"] = run.ended_at.isoformat()
    return data


def runs_table(runs: Sequence[RunRecord]) -> str:
    """A text table of run records as given (newest first), times local."""
    header = ["STARTED", "AGENT", "MODEL", "REQUESTS", "INPUT", "OUTPUT", "TOTAL", "ITEMS"]
    header.append("OUTCOME")
    rows = [
        [
            _local(run.started_at),
            run.agent,
            run.model,
            *(str(n) for n in (run.requests, run.input_tokens, run.output_tokens)),
            str(run.total_tokens),
            str(run.items_added),
            run.outcome,
        ]
        for run in runs
    ]
    return table(header, rows, numbers={3, 4, 5, 6, 7})


def usage_table(usages: Sequence[tuple[str, SessionUsage]]) -> str:
    """A text table of sessions' usage as given (most total tokens first)."""
    header = ["SESSION", "RUNS", "REQUESTS", "INPUT", "OUTPUT", "TOTAL", "LAST RUN"]
    rows = [
        [
            session_id,
            *(str(n) for n in (usage.runs, usage.requests, usage.input_tokens)),
            str(usage.output_tokens),
            str(usage.total_tokens),
            _local(usage.last_run_at) if usage.last_run_at is not None else "",
        ]
        for session_id, usage in usages
    ]
    return table(header, rows, numbers={1, 2, 3, 4, 5})


def session_to_json(info: SessionInfo) -> dict[str, Any]:
    """A session as JSON-ready data; times are ISO 8601 in UTC."""
    return {
        "session_id": info.session_id,
        "message_count": info.message_count,
        "created_at": info.created_at.isoformat(),
        "updated_at": info.updated_at.isoformat(),
    }


def _field(item: Any, name: str) -> Any:
    """``item.name`` or ``item[name]``: SDK items are models, or plain dicts."""
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def write(text: str) -> None:
    """Print ``text`` as it is, with no newline added, and flush."""
    click.echo(text, nl=False)


class StreamPrinter:
    """Prints one streamed run's events as they arrive: text deltas under an
    ``Assistant:`` label, tool calls with their arguments, tool results, handoffs.
    """

    def __init__(self) -> None:
        self.open_item: str | None = None  # the message whose text is being printed

    def end_line(self) -> None:
        """Finish the line of text being streamed, if any."""
        if self.open_item is not None:
            write("\n")
            self.open_item = None

    def event(self, event: Any) -> None:
        """Print what ``event`` (an SDK stream event) shows; ignore the rest."""
        if event.type == "raw_response_event":
            data = event.data
            if data.type == "response.output_text.delta" and data.delta:
                if self.open_item != data.item_id:
                    self.end_line()
                    write(label("Assistant:", "cyan") + " ")
                    self.open_item = data.item_id
                write(data.delta)
        elif event.type == "run_item_stream_event":
            item = event.item
            if event.name == "message_output_created":
                if self.open_item is None:  # not streamed as deltas: print it whole
                    parts = _field(item.raw_item, "content") or []
                    text = "".join(str(_field(part, "text") or "") for part in parts)
                    write(f"{label('Assistant:', 'cyan')} {text}\n")
                self.end_line()
            elif event.name == "tool_called":
                self.end_line()
                raw = item.raw_item
                name = _field(raw, "name") or _field(raw, "type") or "tool"
                click.echo(tool_call_line(str(name), _field(raw, "arguments") or ""))
            elif event.name == "tool_output":
                self.end_line()
                click.echo(tool_result_line(item.output))
            elif event.name == "handoff_occured":
                self.end_line()
                click.echo(dim(f"(handed off to {item.target_agent.name})"))


def held_by(holder: LeaseHolder | None, unknown: str = "a chat replying, say") -> str:
    """``"pid N on host H"``: how a message names the run holding a session (from
    ``Store.lease_holder``), terminal-safe; ``unknown`` when nothing of it is known."""
    known = "" if holder is None else printable(str(holder))
    return known or unknown
