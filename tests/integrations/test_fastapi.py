"""The FastAPI example served by uvicorn on loopback, as in production.

Many sessions talk at once, mixing ``POST /chat`` (``await Runner.run``) and
``POST /chat/stream`` (``Runner.run_streamed``, server-sent events); afterwards every
session's history must be its own, in the model's requests and in ``GET /sessions/<id>``.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integrations._http import (
    ServerProcess,
    chat_turn,
    check_histories,
    converse_concurrently,
    expected_reply,
    get_json,
    post_json,
    stored_history,
    user_message,
)
from tests.integrations.conftest import EXAMPLES, ConcurrencyProbe, server_env
from tests.responses_server import ResponsesServer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def uvicorn_server(
    loopback_model: ResponsesServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("fastapi")
    server = ServerProcess(
        [sys.executable, "-m", "uvicorn", "app:app", "--host=127.0.0.1", "--port=0"],
        cwd=EXAMPLES / "fastapi_app",
        env=server_env(loopback_model, workdir),
        log=workdir / "uvicorn.log",
        address=r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
    )
    server.wait_until_serving("/sessions/readiness-probe")
    yield server
    # Uvicorn runs the lifespan's shutdown (which closes the memory), then re-raises the
    # signal, so a graceful stop ends with status -SIGTERM.
    server.stop(statuses=(0, -signal.SIGTERM))
    assert "Application shutdown complete" in server.log()


def read_events(response: Any) -> list[tuple[str, dict[str, Any]]]:
    """Parse a ``text/event-stream`` body into ``(event name, data)`` pairs."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = "message"
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.removeprefix("data:").strip())))
        elif not line:
            name = "message"
    return events


def stream_turn(base_url: str, session_id: str, message: str) -> tuple[list[str], str]:
    """Send one streamed turn; return its text deltas and the final reply."""
    request = urllib.request.Request(
        f"{base_url}/chat/stream",
        data=json.dumps({"session_id": session_id, "message": message}).encode(),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = read_events(response)
    deltas = [data["delta"] for name, data in events if name == "message"]
    assert [name for name, _ in events][-1] == "done", events
    return deltas, events[-1][1]["reply"]


@pytest.mark.timeout(120)
def test_concurrent_sessions_plain_and_streamed(
    uvicorn_server: ServerProcess, loopback_model: ResponsesServer, probe: ConcurrencyProbe
) -> None:
    base = uvicorn_server.base_url
    session_ids = [f"fastapi-user-{n}" for n in range(32)]

    def say(session_id: str, message: str, turn: int) -> str:
        if turn == 2:  # the middle turn streams: history flows through both paths
            deltas, reply = stream_turn(base, session_id, message)
            assert len(deltas) > 1 and "".join(deltas) == reply
            return reply
        return chat_turn(base, session_id, message)

    replies = converse_concurrently(session_ids, say)
    check_histories(loopback_model, replies, functools.partial(stored_history, base))
    assert probe.peak > 1, "the server never ran two turns at once"


def test_streamed_turn_is_stored(uvicorn_server: ServerProcess) -> None:
    base = uvicorn_server.base_url
    deltas, reply = stream_turn(base, "fastapi-stream-only", user_message("stream-only", 1))
    assert "".join(deltas) == reply == expected_reply("stream-only", 1)
    messages = get_json(f"{base}/sessions/fastapi-stream-only")["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]


def test_bad_request_is_refused(uvicorn_server: ServerProcess) -> None:
    for path in ("/chat", "/chat/stream"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            post_json(f"{uvicorn_server.base_url}{path}", {"session_id": "", "message": "hi"})
        assert refused.value.code == 422
