"""A Flask chat endpoint with session memory: ``Runner.run_sync`` and a SQLite file.

Run it (from this directory)::

    pip install -r requirements.txt          # plus agentsession itself
    export OPENAI_API_KEY=sk-...
    gunicorn --workers 3 --threads 8 --bind 127.0.0.1:8000 app:app

    curl -s localhost:8000/chat -H 'Content-Type: application/json' \\
        -d '{"session_id": "user_1", "message": "What city is the Golden Gate Bridge in?"}'
    curl -s localhost:8000/sessions/user_1

Each process builds one ``SQLiteSessionMemory`` when it imports this module, and every
request thread of that process shares it; gunicorn's worker processes share the file.
``AGENTSESSION_DB`` chooses the file (default ``conversations.db``).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, jsonify, request

from agentsession import Agent, RunConfig, Runner, SQLiteSessionMemory


def create_app(database: str | None = None) -> Flask:
    """Build the app, with one memory on ``database`` (or ``$AGENTSESSION_DB``)."""
    app = Flask(__name__)
    memory = SQLiteSessionMemory(database or os.environ.get("AGENTSESSION_DB", "conversations.db"))
    agent = Agent(name="Assistant", instructions="Reply very concisely.")

    @app.post("/chat")
    def chat() -> tuple[Response, int] | Response:
        """Take ``{"session_id": ..., "message": ...}``; answer ``{"reply": ...}``."""
        body: Any = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="expected a JSON object"), 400
        session_id, message = body.get("session_id"), body.get("message")
        if not isinstance(session_id, str) or not session_id or not isinstance(message, str):
            return jsonify(error="session_id and message must be non-empty strings"), 400
        config = RunConfig(memory=memory, session_id=session_id)
        # Blocks this request thread only; the run itself goes on agentsession's
        # background event loop, shared by every thread of the process.
        result = Runner.run_sync(agent, message, run_config=config)
        return jsonify(reply=result.final_output)

    @app.get("/sessions/<session_id>")
    def history(session_id: str) -> Response:
        """Return the session's stored messages, oldest first (the blocking API)."""
        return jsonify(session_id=session_id, messages=memory.store.get_messages(session_id))

    return app


app = create_app()
