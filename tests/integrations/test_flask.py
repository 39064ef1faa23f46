"""The Flask example served by gunicorn, as in production: threads, then worker processes.

Many sessions talk at once over HTTP; afterwards every session's history must be its own,
in the model's requests and in ``GET /sessions/<id>``.
"""

from __future__ import annotations

import functools
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integrations._http import (
    ServerProcess,
    chat_turn,
    check_histories,
    converse_concurrently,
    post_json,
    stored_history,
)
from tests.integrations.conftest import EXAMPLES, ConcurrencyProbe, server_env
from tests.responses_server import ResponsesServer

pytest.importorskip("flask")
pytest.importorskip("gunicorn")

SERVINGS = [
    pytest.param((1, 8), id="1-process-8-threads"),
    pytest.param((3, 4), id="3-processes-4-threads"),
]


@pytest.fixture(params=SERVINGS)
def gunicorn(
    request: pytest.FixtureRequest, loopback_model: ResponsesServer, tmp_path: Path
) -> Iterator[tuple[ServerProcess, int]]:
    workers, threads = request.param
    server = ServerProcess(
        [
            sys.executable,
            "-m",
            "gunicorn",
            f"--workers={workers}",
            f"--threads={threads}",
            "--bind=127.0.0.1:0",
            "app:app",
        ],
        cwd=EXAMPLES / "flask_app",
        env=server_env(loopback_model, tmp_path),
        log=tmp_path / "gunicorn.log",
        address=r"Listening at: http://127\.0\.0\.1:(\d+)",
    )
    server.wait_until_serving("/sessions/readiness-probe")
    yield server, workers
    server.stop()  # and it must exit with status 0 after a graceful shutdown


@pytest.mark.timeout(120)
def test_concurrent_sessions_keep_their_own_history(
    gunicorn: tuple[ServerProcess, int], loopback_model: ResponsesServer, probe: ConcurrencyProbe
) -> None:
    server, workers = gunicorn
    with pytest.raises(urllib.error.HTTPError) as refused:
        post_json(f"{server.base_url}/chat", {"session_id": "", "message": "hi"})
    assert refused.value.code == 400

    session_ids = [f"flask-{workers}w-user-{n}" for n in range(32)]

    replies = converse_concurrently(
        session_ids,
        lambda session_id, message, turn: chat_turn(server.base_url, session_id, message),
    )
    check_histories(loopback_model, replies, functools.partial(stored_history, server.base_url))
    assert probe.peak > 1, "the server never ran two turns at once"
    assert server.log().count("Booting worker") == workers
