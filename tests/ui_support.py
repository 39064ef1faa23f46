"""A real ``agentsession ui`` server for the UI tests, and the data they look at.

``running_ui`` serves ``create_app`` with uvicorn on 127.0.0.1, on a free port, in a
thread; the socket listens before the thread starts, so a request made at once waits in
the backlog instead of failing. The server is stopped (bounded in time) on exit.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import uvicorn

from agentsession.ui import Settings, create_app
from agentsession.ui.security import new_token
from agentsession.ui.server import address, bind

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
HOSTILE_ID = "<b>x</b>\"'&<script>window.__pwned = 3</script>"


@dataclass
class Ui:
    """A running inspector: its base URL, port and settings (token, CSRF token...)."""

    base: str
    port: int
    settings: Settings

    @property
    def url(self) -> str:
        """The address the command prints: the base URL with the token."""
        return f"{self.base}?token={self.settings.token}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        cookie: bool = True,
        headers: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        """``(status, headers, body)`` of one request (with the token cookie unless not)."""
        sent = {"Host": self.host, **(headers or {})}
        if cookie:
            sent["Cookie"] = f"{self.settings.cookie}={self.settings.token}"
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read().decode(),
            )
        finally:
            conn.close()

    def post(self, path: str, form: dict[str, str], **kwargs: Any) -> tuple[int, dict, str]:
        """A POST carrying the CSRF token (``form`` may override it)."""
        return self.request("POST", path, form={"csrf": self.settings.csrf, **form}, **kwargs)


@contextmanager
def running_ui(store: Any, *, allow_writes: bool = False) -> Iterator[Ui]:
    """Serve the inspector over ``store`` on 127.0.0.1 (a free port) while in the block."""
    sock = bind("127.0.0.1", 0)
    base, port, hosts = address(sock, "127.0.0.1")
    settings = Settings(
        token=new_token(),
        csrf=new_token(),
        hosts=hosts,
        cookie=f"agentsession-ui-{port}",
        allow_writes=allow_writes,
        database="sessions.db",
    )
    config = uvicorn.Config(
        create_app(store, settings), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Ui(base, port, settings)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "the UI server did not stop within 10 s"


def weather_conversation() -> list[dict[str, Any]]:
    """A turn with a tool call, a handoff and reasoning, as the SDK stores them."""
    return [
        {"role": "user", "content": "What's the weather in Paris? Then book me a table."},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Check weather."}]},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris", "unit": "celsius"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 22 °C"},
        {
            "type": "function_call",
            "call_id": "call_2",
            "name": "transfer_to_booking_agent",
            "arguments": "{}",
        },
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": '{"assistant": "Booking agent"}',
        },
        {
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "It is sunny in Paris (22 °C). Table booked."}
            ],
        },
    ]


def hostile_conversation() -> list[dict[str, Any]]:
    """Stored strings full of HTML and script, in every place the pages show."""
    return [
        {"role": "user", "content": f"hostile {HOSTILE}"},
        {
            "type": "function_call",
            "call_id": "h1",
            "name": "<b>tool</b>",
            "arguments": '{"html": "' + HOSTILE.replace('"', '\\"') + '"}',
        },
        {"type": "function_call_output", "call_id": "h1", "output": HOSTILE},
        {"role": "assistant", "content": [{"type": "output_text", "text": HOSTILE}]},
    ]
