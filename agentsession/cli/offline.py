"""OfflineModel: a deterministic stand-in model that needs no network and no API key.

It is what ``agentsession demo`` and ``agentsession chat`` use when ``OPENAI_API_KEY`` is
not set. It knows nothing about the world and says so; what it reports is what the run
gave it, that is what session memory supplied: how many earlier messages it sees, the
first question asked in the session and the previous one. So memory can be seen working
with nothing else installed.

It is a real ``agents.models.interface.Model``: ``get_response`` returns a complete
``ModelResponse`` and ``stream_response`` streams the same reply word by word as Responses
API stream events, exactly as the SDK's runner consumes them from OpenAI. Both report
usage as OpenAI does, with token counts estimated the way ``HistoryWindow`` counts them
(an item's JSON length / 4): no tokenizer runs, so they are labelled estimates wherever
agentsession shows them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from agents.items import ModelResponse
from agents.models.interface import Model, ModelTracing
from agents.testing import assistant_message, function_call
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionToolCall,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)

from .._sdk import TResponseOutputItem, TResponseStreamEvent
from ..compaction import REQUEST_HEAD
from ..window import approximate_tokens
from .models import OFFLINE_MODEL_NAME

if TYPE_CHECKING:
    from agents.agent_output import AgentOutputSchemaBase
    from agents.handoffs import Handoff
    from agents.items import TResponseInputItem
    from agents.model_settings import ModelSettings
    from agents.tool import Tool
    from openai.types.responses.response_prompt_param import ResponsePromptParam

__all__ = (
    "OFFLINE_MODEL_NAME",
    "OfflineModel",
    "TIME_TOOL_NAME",
    "offline_reply",
    "offline_summary",
)

#: The one tool the offline model knows how to call, when the agent offers it.
TIME_TOOL_NAME = "current_time"

_INTRO = "Offline demo model here: I can't look that up, but I can see this session's memory:"
_INTRO_RECALL = "Offline demo model here, reading this session's memory:"
_ASKS_TIME = re.compile(r"\bwhat time\b|\btime is it\b|\bcurrent time\b|\bwhat's the time\b", re.I)
_ASKS_RECALL = re.compile(
    r"\b(first|earlier|previous|last|before)\b.*\bask|\bask.*\b(first|earlier|before)\b", re.I
)
_QUOTE_LIMIT = 80


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        result = dump(exclude_unset=True)
        if isinstance(result, dict):
            return result
    return {}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (_as_dict(part) for part in content)
        return "".join(str(part.get("text", "")) for part in parts)
    return ""


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 3].rstrip() + "..."
    return json.dumps(text, ensure_ascii=False)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _memory_report(earlier: list[dict[str, Any]]) -> str:
    if not earlier:
        return "no earlier messages, so this is where the session starts."
    questions = [_text_of(item.get("content")) for item in earlier if _is_user_message(item)]
    report = _plural(len(earlier), "earlier message")
    calls = sum(1 for item in earlier if item.get("type") == "function_call")
    if calls:
        report += f" ({_plural(calls, 'tool call')} among them)"
    if not questions:
        return report + "."
    report += f"; you first asked {_quote(questions[0])}"
    if len(questions) > 1:
        report += f", and just before this, {_quote(questions[-1])}"
    return report + "."


def _tool_name_for(call_id: Any, items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("type") == "function_call" and item.get("call_id") == call_id:
            return str(item.get("name", "tool"))
    return "tool"


def offline_reply(
    input: str | list[TResponseInputItem], tools: list[Tool] | None = None
) -> TResponseOutputItem:
    """Decide the offline model's reply to ``input``; a pure, deterministic function.

    Args:
        input: the run's input items, history from memory first (or one user string).
        tools: the tools the agent offers; only one named ``current_time`` is ever called.

    Returns:
        Either an assistant message, or (when the last message asks for the time and the
        agent offers ``current_time``) a call to that tool with ``{"timezone": "UTC"}``.
        After a tool's output, the message reports that output.
    """
    if isinstance(input, str):
        items = [{"role": "user", "content": input}]
    else:
        items = [_as_dict(item) for item in input]
    last = items[-1] if items else {}
    if last.get("type") == "function_call_output":
        name = _tool_name_for(last.get("call_id"), items)
        text = f"The {name} tool says: {last.get('output')}"
        return assistant_message(text, item_id=f"msg_offline_{len(items)}")
    users = [index for index, item in enumerate(items) if _is_user_message(item)]
    current = users[-1] if users else len(items)
    question = _text_of(items[current].get("content")) if users else ""
    if question.startswith(REQUEST_HEAD):
        return assistant_message(offline_summary(question), item_id=f"msg_offline_{len(items)}")
    offered = {getattr(tool, "name", None) for tool in tools or ()}
    if TIME_TOOL_NAME in offered and _ASKS_TIME.search(question):
        call_id = f"call_offline_{len(items)}"
        return function_call(TIME_TOOL_NAME, {"timezone": "UTC"}, call_id=call_id)
    intro = _INTRO_RECALL if _ASKS_RECALL.search(question) else _INTRO
    text = f"{intro} {_memory_report(items[:current])}"
    return assistant_message(text, item_id=f"msg_offline_{len(items)}")


def offline_summary(request: str) -> str:
    """The offline model's summary of a compaction's request (``compaction.summary_request``):
    deterministic, and saying that no model wrote it. It names how many items it covers,
    the user's questions in them (quoted, shortened) and how many tool calls they hold."""
    head, _, transcript = request.partition("\n\n")
    counted = re.search(r"(\d+) items", head)
    count = int(counted.group(1)) if counted else 0
    lines = transcript.splitlines()
    questions = [line[len("user: ") :] for line in lines if line.startswith("user: ")]
    calls = sum(1 for line in lines if line.startswith("tool call "))
    text = f"Offline summary of {_plural(count, 'item')} (no model wrote this): "
    if questions:
        text += "the user asked " + ", then ".join(_quote(q) for q in questions)
    else:
        text += "no user questions"
    if calls:
        text += f"; {_plural(calls, 'tool call')}"
    return text + "."


def _words(text: str) -> list[str]:
    """Split ``text`` into word-sized deltas that join back to exactly ``text``."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    return pieces or [""]


class OfflineModel(Model):
    """A deterministic model that answers from the session's memory alone.

    Same input, same reply (see ``offline_reply``); it never touches the network.
    Thread safety: stateless, so one instance may serve any number of runs at once.

    Args:
        delay: seconds to pause between streamed words, so a reply visibly streams in a
            terminal (0, the default, streams without pausing).

    Raises:
        ValueError: ``delay`` is negative.
    """

    #: The model name a run records in its usage ledger.
    model = OFFLINE_MODEL_NAME

    def __init__(self, *, delay: float = 0.0) -> None:
        if not delay >= 0:
            raise ValueError(f"delay must be 0 or more seconds, got {delay!r}")
        self.delay = delay

    def __repr__(self) -> str:
        return f"OfflineModel(delay={self.delay!r})"

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        """Return the whole reply at once (see ``offline_reply``)."""
        output = offline_reply(input, tools)
        figures = estimated_usage(system_instructions, input, output)
        usage = Usage(
            requests=1,
            input_tokens=figures["input_tokens"],
            output_tokens=figures["output_tokens"],
            total_tokens=figures["total_tokens"],
        )
        return ModelResponse(output=[output], usage=usage, response_id=None)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        """Stream the reply as Responses events: text deltas word by word, then completion."""
        output = offline_reply(input, tools)
        for event in _stream_events(output, estimated_usage(system_instructions, input, output)):
            if self.delay and isinstance(event, ResponseTextDeltaEvent):
                await asyncio.sleep(self.delay)
            yield event


def estimated_usage(
    instructions: str | None, input: str | list[Any], output: TResponseOutputItem
) -> dict[str, Any]:
    """The usage the offline model reports: tokens estimated as ``HistoryWindow`` counts
    them (``window.approximate_tokens``), in the Responses API's ``usage`` shape."""
    items = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
    if instructions:
        items.insert(0, {"role": "system", "content": instructions})
    sent = sum(approximate_tokens(item) for item in items)
    received = approximate_tokens(output.model_dump(exclude_unset=True))
    return {
        "input_tokens": sent,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": received,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": sent + received,
    }


def _response(
    output: list[TResponseOutputItem], status: str, usage: dict[str, Any] | None = None
) -> Response:
    return Response.model_validate(
        {
            "usage": usage,
            "id": "resp_offline",
            "created_at": 0,
            "model": OFFLINE_MODEL_NAME,
            "object": "response",
            "output": output,
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "status": status,
        }
    )


def _stream_events(
    item: TResponseOutputItem, usage: dict[str, Any]
) -> Iterator[TResponseStreamEvent]:
    """The Responses stream events of a one-item response, in the order OpenAI sends them."""
    seq = iter(range(1_000_000))
    yield ResponseCreatedEvent(
        type="response.created", response=_response([], "in_progress"), sequence_number=next(seq)
    )
    yield ResponseInProgressEvent(
        type="response.in_progress",
        response=_response([], "in_progress"),
        sequence_number=next(seq),
    )
    if isinstance(item, ResponseOutputMessage):
        yield ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            item=item.model_copy(update={"content": [], "status": "in_progress"}),
            output_index=0,
            sequence_number=next(seq),
        )
        for index, part in enumerate(item.content):
            if not isinstance(part, ResponseOutputText):
                continue
            at: dict[str, Any] = {"item_id": item.id, "output_index": 0, "content_index": index}
            yield ResponseContentPartAddedEvent(
                type="response.content_part.added",
                part=part.model_copy(update={"text": ""}),
                sequence_number=next(seq),
                **at,
            )
            for delta in _words(part.text):
                yield ResponseTextDeltaEvent(
                    type="response.output_text.delta",
                    delta=delta,
                    logprobs=[],
                    sequence_number=next(seq),
                    **at,
                )
            yield ResponseTextDoneEvent(
                type="response.output_text.done",
                text=part.text,
                logprobs=[],
                sequence_number=next(seq),
                **at,
            )
            yield ResponseContentPartDoneEvent(
                type="response.content_part.done", part=part, sequence_number=next(seq), **at
            )
    elif isinstance(item, ResponseFunctionToolCall):
        yield ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            item=item.model_copy(update={"arguments": ""}),
            output_index=0,
            sequence_number=next(seq),
        )
        yield ResponseFunctionCallArgumentsDeltaEvent(
            type="response.function_call_arguments.delta",
            item_id=item.id or item.call_id,
            output_index=0,
            delta=item.arguments,
            sequence_number=next(seq),
        )
    yield ResponseOutputItemDoneEvent(
        type="response.output_item.done", item=item, output_index=0, sequence_number=next(seq)
    )
    yield ResponseCompletedEvent(
        type="response.completed",
        response=_response([item], "completed", usage),
        sequence_number=next(seq),
    )
