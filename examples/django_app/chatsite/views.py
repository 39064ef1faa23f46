"""The chat views: ``Runner.run_sync`` in an ordinary (synchronous) Django view."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from agentsession import Agent, RunConfig, Runner

from .memory import get_memory

agent = Agent(name="Assistant", instructions="Reply very concisely.")


@csrf_exempt  # a JSON API for other programs; put your own authentication here
@require_POST
def chat(request: HttpRequest) -> JsonResponse:
    """Take ``{"session_id": ..., "message": ...}``; answer ``{"reply": ...}``."""
    try:
        body = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "expected a JSON object"}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"error": "expected a JSON object"}, status=400)
    session_id, message = body.get("session_id"), body.get("message")
    if not isinstance(session_id, str) or not session_id or not isinstance(message, str):
        return JsonResponse({"error": "session_id and message must be strings"}, status=400)
    config = RunConfig(memory=get_memory(), session_id=session_id)
    # Blocks this request's thread only: the run goes on agentsession's background loop.
    result = Runner.run_sync(agent, message, run_config=config)
    return JsonResponse({"reply": result.final_output})


@require_GET
def history(request: HttpRequest, session_id: str) -> JsonResponse:
    """Return the session's stored messages, oldest first (the blocking API)."""
    messages = get_memory().store.get_messages(session_id)
    return JsonResponse({"session_id": session_id, "messages": messages})
