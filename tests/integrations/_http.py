"""Helpers shared by the integration tests: run a server process, talk to it over HTTP,
and check every session's history afterwards."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.responses_server import ResponsesServer, user_texts

TURNS = 3


class ServerProcess:
    """An example's server in a subprocess, its output in a log file.

    Args:
        argv: the command line; it must log the address it listens on.
        cwd: the example's directory.
        env: the process environment.
        log: where its standard output and error go.
        address: a pattern whose group 1 is the port, found in the log.
    """

    def __init__(
        self, argv: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path, address: str
    ) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.base_url = f"http://127.0.0.1:{self._port(re.compile(address))}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _port(self, pattern: re.Pattern[str], timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.log())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop(check=False)
        raise AssertionError(f"the server never reported its port:\n{self.log()}")

    def wait_until_serving(self, path: str, timeout: float = 30.0) -> None:
        """Poll ``GET path`` until it answers 200 (the app is imported and serving)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                get_json(self.base_url + path, timeout=5)
                return
            except (OSError, urllib.error.URLError) as exc:
                last = exc
                time.sleep(0.05)
        self.stop(check=False)
        raise AssertionError(f"the server never answered ({last!r}):\n{self.log()}")

    def stop(self, *, check: bool = True, statuses: Sequence[int] = (0,)) -> None:
        """Stop the server the way a process manager does (SIGTERM), and wait for it.

        With ``check``, its exit status must be one of ``statuses``.
        """
        sig = signal.SIGTERM
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the server ignored {sig!r}:\n{self.log()}") from None
        self._log.close()
        if check:
            assert self.proc.returncode in statuses, (
                f"exit status {self.proc.returncode}:\n{self.log()}"
            )


def post_json(url: str, body: dict[str, Any], timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.status == 200
        return json.load(response)


def get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.status == 200
        return json.load(response)


def chat_turn(base_url: str, session_id: str, message: str) -> str:
    """One plain turn through the example's ``POST /chat``; returns the reply."""
    reply: str = post_json(f"{base_url}/chat", {"session_id": session_id, "message": message})[
        "reply"
    ]
    return reply


def stored_history(base_url: str, session_id: str) -> list[dict[str, Any]]:
    """The session's stored messages, through the example's ``GET /sessions/<id>``."""
    answer = get_json(f"{base_url}/sessions/{session_id}")
    assert answer["session_id"] == session_id
    messages: list[dict[str, Any]] = answer["messages"]
    return messages


def message_text(message: dict[str, Any]) -> str:
    """The text of a stored user or assistant message."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def user_message(session_id: str, turn: int) -> str:
    return f"{session_id} says hello for turn {turn}"


def expected_reply(session_id: str, turn: int) -> str:
    return f"echo: {user_message(session_id, turn)} (seen {turn} user messages)"


def converse_concurrently(
    session_ids: Sequence[str],
    say: Callable[[str, str, int], str],
    clients: int = 16,
) -> dict[str, list[str]]:
    """Hold every session's conversation at once: ``clients`` threads, ``TURNS`` turns each.

    ``say(session_id, message, turn)`` sends one turn and returns the reply. Turns of a
    session go in order; sessions interleave freely.
    """

    def conversation(session_id: str) -> list[str]:
        return [say(session_id, user_message(session_id, t), t) for t in range(1, TURNS + 1)]

    with ThreadPoolExecutor(clients) as pool:
        replies = list(pool.map(conversation, session_ids))
    return dict(zip(session_ids, replies, strict=True))


def check_histories(
    model: ResponsesServer,
    replies: dict[str, list[str]],
    history: Callable[[str], list[dict[str, Any]]],
) -> None:
    """Every session saw exactly its own past, and stored exactly its own turns.

    * each reply is the echo of that turn, counting that session's turns only;
    * the model was asked once per turn, and turn k's request carried exactly the
      session's user messages 1..k, in order;
    * ``history(session_id)`` (the app's ``GET /sessions/<id>``) is the session's
      ``2 * TURNS`` messages: user, assistant, ... in order.
    """
    requests: dict[str, list[list[str]]] = {}
    for body in model.requests:
        texts = user_texts(body)
        if texts:
            requests.setdefault(texts[-1], []).append(texts)
    for session_id, got in replies.items():
        assert got == [expected_reply(session_id, t) for t in range(1, TURNS + 1)]
        for turn in range(1, TURNS + 1):
            sent = requests.get(user_message(session_id, turn))
            assert sent == [[user_message(session_id, t) for t in range(1, turn + 1)]], (
                f"{session_id} turn {turn}: the model was sent {sent}"
            )
        messages = history(session_id)
        assert [m.get("role") for m in messages] == ["user", "assistant"] * TURNS
        assert [message_text(m) for m in messages] == [
            text
            for turn in range(1, TURNS + 1)
            for text in (user_message(session_id, turn), expected_reply(session_id, turn))
        ]
