"""A FastAPI chat service with session memory: ``await Runner.run`` and a streamed variant.

Run it (from this directory)::

    pip install -r requirements.txt          # plus agentsession itself
    export OPENAI_API_KEY=sk-...
    uvicorn app:app --host 127.0.0.1 --port 8000

    curl -s localhost:8000/chat -H 'Content-Type: application/json' \\
        -d '{"session_id": "user_1", "message": "What city is the Golden Gate Bridge in?"}'
    curl -sN localhost:8000/chat/stream -H 'Content-Type: application/json' \\
        -d '{"session_id": "user_1", "message": "What state is it in?"}'
    curl -s localhost:8000/sessions/user_1

The memory is opened when the app starts and closed when it stops (the lifespan), and every
request of the process shares it. ``AGENTSESSION_DB`` chooses the file (default
``conversations.db``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from openai.types.responses import ResponseTextDeltaEvent
from pydantic import BaseModel, Field

from agentsession import Agent, RunConfig, Runner, SQLiteSessionMemory

logger = logging.getLogger(__name__)
agent = Agent(name="Assistant", instructions="Reply very concisely.")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the process's memory at start-up; close it (and its connections) at shutdown."""
    memory = SQLiteSessionMemory(os.environ.get("AGENTSESSION_DB", "conversations.db"))
    app.state.memory = memory
    try:
        yield
    finally:
        await memory.aclose()


app = FastAPI(title="agentsession chat", lifespan=lifespan)


class ChatRequest(BaseModel):
    """One user turn."""

    session_id: str = Field(min_length=1)
    message: str


class ChatReply(BaseModel):
    """The agent's answer to one turn."""

    reply: str


def run_config(request: Request, session_id: str) -> RunConfig:
    """The run configuration of one turn: the app's memory, this conversation."""
    return RunConfig(memory=request.app.state.memory, session_id=session_id)


@app.post("/chat")
async def chat(turn: ChatRequest, request: Request) -> ChatReply:
    """Run one turn with the session's history and return the reply."""
    result = await Runner.run(agent, turn.message, run_config=run_config(request, turn.session_id))
    return ChatReply(reply=str(result.final_output))


def sse(data: dict[str, Any], event: str | None = None) -> str:
    """One server-sent event carrying ``data`` as JSON."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


@app.post("/chat/stream")
async def chat_stream(turn: ChatRequest, request: Request) -> StreamingResponse:
    """Run one turn, streaming the reply as server-sent events.

    Each text delta is a ``data: {"delta": ...}`` event; the last event is
    ``event: done`` with ``{"reply": ...}``, or ``event: error`` if the run failed (the
    status code was sent with the first byte). The turn is stored when the run ends.
    """
    result = Runner.run_streamed(
        agent, turn.message, run_config=run_config(request, turn.session_id)
    )

    async def events() -> AsyncIterator[str]:
        try:
            async for event in result.stream_events():
                if event.type == "raw_response_event" and isinstance(
                    event.data, ResponseTextDeltaEvent
                ):
                    yield sse({"delta": event.data.delta})
            yield sse({"reply": str(result.final_output)}, event="done")
        except Exception:
            logger.exception("streamed run of session %s failed", turn.session_id)
            yield sse({"error": "the run failed"}, event="error")
        finally:
            if not result.is_complete:  # the client went away: stop the run
                result.cancel()

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/sessions/{session_id}")
async def history(session_id: str, request: Request) -> dict[str, Any]:
    """Return the session's stored messages, oldest first (the async memory)."""
    messages = await request.app.state.memory.get_messages(session_id)
    return {"session_id": session_id, "messages": messages}
