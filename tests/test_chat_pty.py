"""``agentsession chat`` in a real pseudo-terminal: type, read the screen, press Ctrl-C
mid-reply, restart and find the history there.

Each test spawns ``python -m agentsession chat`` (through runpy, after taking the pty as
its controlling terminal so that Ctrl-C raises SIGINT as in a real terminal) and
synchronizes on what appears on the screen, never on sleeps.
"""

from __future__ import annotations

import codecs
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from responses_server import ResponsesServer, echo_responder, user_texts

from agentsession import SQLiteStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")

if sys.platform != "win32":
    import fcntl
    import pty
    import struct
    import termios

# Takes the pty as controlling terminal, then runs the package as ``python -m`` does.
BOOTSTRAP = (
    "import fcntl, runpy, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "sys.argv[0] = 'agentsession'\n"
    "runpy.run_module('agentsession', run_name='__main__', alter_sys=True)\n"
)
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r")
PROMPT = "You: "
TIMEOUT = 15.0


class Terminal:
    """A process on a pty, and what it has printed so far (escape sequences removed)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 300, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-c", BOOTSTRAP, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.screen = ""
        self.seen = 0  # how much of the screen expect() has consumed
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        self.screen += ANSI.sub("", self._decoder.decode(data))
        return bool(data)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """Wait until ``pattern`` (a regex) appears after what was consumed; return the
        text up to and including it, and consume it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.screen, self.seen)
            if match:
                text = self.screen[self.seen : match.end()]
                self.seen = match.end()
                return text
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(
                    f"{pattern!r} did not appear; the screen after the last match:\n"
                    f"{self.screen[self.seen :]}"
                )

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def line(self, text: str) -> str:
        """Type ``text`` and Enter at the prompt; return the screen up to the next prompt."""
        self.send(text + "\n")
        self.expect(re.escape(text) + "\n")  # the terminal's echo of the typed line
        return self.expect(PROMPT)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit, reading the screen meanwhile; return its status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.05)
        return self.process.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No key, no server, no colour, a private home: tests add what they use."""
    names = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "PYTHONPATH", "VIRTUAL_ENV")
    base = {name: os.environ[name] for name in names if name in os.environ}
    return {
        **base,
        "HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "TERM": "dumb",
        "NO_COLOR": "1",
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
    }


@pytest.fixture
def spawn(env: dict[str, str]) -> Iterator[Any]:
    terminals: list[Terminal] = []

    def start(*args: str, extra: dict[str, str] | None = None) -> Terminal:
        terminal = Terminal(["chat", *args], {**env, **(extra or {})})
        terminals.append(terminal)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


def stored(path: Path, session_id: str) -> list[dict[str, Any]]:
    with SQLiteStore(path) as store:
        return store.get_messages(session_id)


def test_offline_chat_remembers_across_restarts(spawn: Any, tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    chat = spawn("--db", str(db), "--session", "trip")
    banner = chat.expect(PROMPT)
    assert "offline demo model (OPENAI_API_KEY is not set)" in banner
    assert "Session 'trip': new" in banner
    # Ctrl-C at the prompt does not leave. Enter follows it because CPython's readline
    # only notices a SIGINT that lands just before it starts waiting once a key arrives.
    chat.send("\x03\n")
    assert "(Ctrl-D or /exit leaves)" in chat.expect(PROMPT)

    reply = chat.line("What city is the Golden Gate Bridge in?")
    assert "Assistant: Offline demo model here" in reply
    assert "no earlier messages" in reply
    reply = chat.line("What state is it in?")
    assert 'you first asked "What city is the Golden Gate Bridge in?"' in reply

    reply = chat.line("what time is it?")  # the offline model calls the chat's tool
    assert 'Tool call: current_time({"timezone": "UTC"})' in reply
    assert re.search(r"Tool result: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", reply)
    assert "Assistant: The current_time tool says:" in reply

    assert "removed the last turn: 4 messages" in chat.line("/undo")
    assert "unknown" not in chat.line("/help").lower()
    assert "Unknown command '/nope'" in chat.line("/nope")
    chat.send("\x04")  # Ctrl-D leaves
    assert chat.wait() == 0

    chat = spawn("--db", str(db), "--session", "trip")
    assert "Session 'trip': 4 messages remembered" in chat.expect(PROMPT)
    history = chat.line("/history")
    assert "1  User: What city is the Golden Gate Bridge in?" in history
    assert "3  User: What state is it in?" in history
    assert "what time is it?" not in history  # undone before the restart

    chat.send("\x1b[A")  # Up recalls the last line typed, even from the last process
    chat.expect(re.escape("/history"))
    chat.send("\x15")  # Ctrl-U: clear the line
    reply = chat.line("What did I ask first?")
    assert "reading this session's memory: 4 earlier messages" in reply
    assert 'you first asked "What city is the Golden Gate Bridge in?"' in reply

    assert "* trip" in chat.line("/sessions")
    assert "Session 'other': new" in chat.line("/switch other")
    assert "no earlier messages" in chat.line("hello other")
    assert "Session 'trip': 6 messages" in chat.line("/switch trip")
    chat.send("/clear\n")  # asks first, as 'agentsession clear' does
    chat.expect(re.escape("Delete all 6 messages of session 'trip'? [y/N]"))
    assert "(nothing deleted)" in chat.line("n")
    assert "Session 'trip': 6 messages" in chat.line("/history")
    chat.send("/clear\n")
    chat.expect(re.escape("[y/N]"))
    assert "cleared session 'trip': 6 messages deleted" in chat.line("y")
    chat.send("/exit\n")
    assert chat.wait() == 0
    assert stored(db, "trip") == []
    assert len(stored(db, "other")) == 2


@pytest.fixture
def held_server() -> Iterator[ResponsesServer]:
    """The loopback Responses server; a reply to a message containing "slowly" stops
    after its first word until the test ends, so it can be interrupted mid-reply; one
    to "explode" fails with an HTTP 500."""

    def responder(body: dict[str, Any]) -> list[dict[str, Any]]:
        if "explode" in (user_texts(body) or [""])[-1]:
            raise RuntimeError("the model exploded")
        return echo_responder(body)

    def slowly(body: dict[str, Any]) -> bool:
        return "slowly" in (user_texts(body) or [""])[-1]

    with ResponsesServer(responder, hold_after_first_delta=slowly) as server:
        yield server


def test_ctrl_c_mid_reply_stores_no_half_turn(
    spawn: Any, tmp_path: Path, held_server: ResponsesServer
) -> None:
    db = tmp_path / "chat.db"
    args = ("--db", str(db), "--session", "s", "--base-url", held_server.base_url)
    extra = {"OPENAI_API_KEY": "sk-test-dummy"}
    chat = spawn(*args, "--model", "gpt-test", extra=extra)
    assert f"Model: gpt-test at {held_server.base_url}" in chat.expect(PROMPT)
    assert "Assistant: echo: hello (seen 1 user messages)" in chat.line("hello")

    chat.send("please answer slowly\n")
    chat.expect("Assistant: echo: ")  # the first word of the reply is on the screen...
    chat.send("\x03")  # ...when Ctrl-C arrives
    assert "(interrupted: this turn was not stored)" in chat.expect(PROMPT)
    history = chat.line("/history")
    assert "Session 's': 2 messages" in history
    assert "slowly" not in history

    reply = chat.line("explode now")  # a failing model call is reported, not stored
    assert "Error: " in reply and "the model exploded" in reply
    assert "(this turn was not stored)" in reply
    assert "Traceback" not in reply
    chat.send("/exit\n")
    assert chat.wait() == 0
    assert [m.get("role") for m in stored(db, "s")] == ["user", "assistant"]

    chat = spawn(*args, extra={**extra, "AGENTSESSION_MODEL": "gpt-test"})
    assert "Session 's': 2 messages remembered" in chat.expect(PROMPT)
    assert "Assistant: echo: again (seen 2 user messages)" in chat.line("again")
    chat.send("\x04")
    assert chat.wait() == 0
    last = held_server.requests[-1]
    assert user_texts(last) == ["hello", "again"]  # history from memory, no half turn
    assert last["model"] == "gpt-test" and last["stream"] is True
    assert len(stored(db, "s")) == 4


_HOLD = """
import sys
from agentsession import SQLiteStore

store = SQLiteStore(sys.argv[1])
assert store.try_lock("trip", "another-run", 60)
print("holding", flush=True)
sys.stdin.readline()
store.unlock("trip", "another-run")
print("released", flush=True)
sys.stdin.readline()
"""


def test_a_turn_on_a_session_another_run_holds_says_it_waits(spawn: Any, tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    with SQLiteStore(db) as store:
        store.add_messages("trip", [{"role": "user", "content": "earlier"}])
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "holding\n"
        chat = spawn("--db", str(db), "--session", "trip")
        chat.expect(PROMPT)
        chat.send("hello\n")
        # The holder's own pid and host, though its owner name says neither.
        chat.expect(
            re.escape(
                f"(waiting for session 'trip', held by another run (pid {holder.pid} on host "
                f"{socket.gethostname()}))"
            )
        )
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "released\n"
        reply = chat.expect(PROMPT)
        assert "Assistant: Offline demo model here" in reply and "1 earlier message" in reply
        assert "waiting" not in chat.line("and now?")  # nobody holds it: no word of waiting
        chat.send("/exit\n")
        assert chat.wait() == 0
    finally:
        holder.kill()
        holder.wait(10)


@pytest.fixture(params=["sqlite", "redis"])
def killed_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(engine, --db value)``; a Redis session of the test's own is deleted after it."""
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "chat.db")
        return
    from agentsession.stores.redis import RedisStore
    from tests import services

    url = services.redis_url()
    yield "redis", url
    with RedisStore(url) as store:  # the command line's default prefix
        store.clear_session(KILLED_SESSION)


KILLED_SESSION = f"killed-{os.getpid()}"


def test_after_kill_9_of_a_chat_mid_reply_the_next_chat_waits_only_for_a_lapsing_lease(
    spawn: Any, held_server: ResponsesServer, killed_db: tuple[str, str]
) -> None:
    engine, db = killed_db
    args = ("--db", db, "--session", KILLED_SESSION, "--base-url", held_server.base_url)
    extra = {"OPENAI_API_KEY": "sk-test-dummy", "AGENTSESSION_MODEL": "gpt-test"}
    first = spawn(*args, extra=extra)
    first.expect(PROMPT)
    first.send("please answer slowly\n")
    first.expect("Assistant: echo: ")  # mid-reply: its run holds the session's lease
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)

    second = spawn(*args, extra=extra)
    second.expect(PROMPT)
    if engine == "redis":  # the dead chat's lease lapses by itself; it is named meanwhile
        second.send("after the kill\n")
        second.expect(
            re.escape(
                f"(waiting for session {KILLED_SESSION!r}, held by another run "
                f"(pid {first.process.pid} on host {socket.gethostname()}))"
            )
        )
        reply = second.expect(PROMPT, timeout=TIMEOUT + 5)
    else:  # the kernel let go of the dead chat's lock: no wait at all
        reply = second.line("after the kill")
        assert "waiting" not in reply
    assert "Assistant: echo: after the kill (seen 1 user messages)" in reply
    second.send("/exit\n")
    assert second.wait() == 0
