"""Fixtures for the integration tests: a loopback model per module, and the environment
that points an example's server process at it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.responses_server import ResponsesServer, echo_responder

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


class ConcurrencyProbe:
    """A responder wrapper that records how many model calls were in flight at once.

    Each call is held for ``hold`` seconds, so calls that a server really serves in
    parallel overlap, and ``peak`` shows it.
    """

    def __init__(self, hold: float = 0.02) -> None:
        self.hold = hold
        self._lock = threading.Lock()
        self._in_flight = 0
        self.peak = 0

    def __call__(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            time.sleep(self.hold)
            return echo_responder(body)
        finally:
            with self._lock:
                self._in_flight -= 1


@pytest.fixture(scope="module")
def loopback_model() -> Iterator[ResponsesServer]:
    """A Responses API server on loopback for one test module's server processes."""
    with ResponsesServer(check_pairing=True) as server:
        yield server


@pytest.fixture
def probe(loopback_model: ResponsesServer) -> Iterator[ConcurrencyProbe]:
    """Install a ``ConcurrencyProbe`` as the module server's responder for one test."""
    probe = ConcurrencyProbe()
    loopback_model.responder = probe
    yield probe
    loopback_model.responder = echo_responder


def server_env(model: ResponsesServer, workdir: Path) -> dict[str, str]:
    """The environment of an example's server process: the loopback model, no tracing.

    The example itself is unchanged: the OpenAI client reads ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY`` as it would in production.
    """
    env = dict(os.environ)
    env.update(
        OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY="test",
        OPENAI_AGENTS_DISABLE_TRACING="1",  # traces would go to the real API
        AGENTSESSION_DB=str(workdir / "conversations.db"),
        XDG_RUNTIME_DIR=str(workdir),  # gunicorn's control socket goes there
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env
