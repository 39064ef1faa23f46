"""``agentsession chat``: an interactive chat whose history lives in session memory.

Every turn is a streamed run with ``RunConfig(memory=..., session_id=...)``, so the chat
remembers across restarts. A turn that does not complete (Ctrl-C, a failed model call)
is rolled back by the runner (``RunConfig(failed_runs="rollback")``, the default) while the
run still holds the session's lease, so no half turn is ever left stored and another
process's messages are never touched. Line editing and input history come from the standard
``readline`` module where the platform has it; input history is kept in
``chat_history`` in agentsession's data folder (``agentsession.cli._db.data_dir``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from agents import Agent, function_tool
from agents.tool import FunctionTool

from .._sdk import run_task
from .._validate import check_session_id
from ..exceptions import StoreError
from ..memory import StoreMemory
from ..runner import RunConfig, Runner
from ..stores.sqlite import SQLiteStore
from ._db import CliStore
from .inspecting import lease_holder
from .models import BuiltModel, ModelChoice
from .render import (
    StreamPrinter,
    dim,
    format_transcript,
    held_by,
    label,
    sessions_table,
    write,
)

__all__ = ("Chat", "HELP", "current_time", "run_chat")

Outcome = Literal["completed", "interrupted", "failed"]

HELP = """\
Commands:
  /history     show this session's stored transcript
  /undo        drop the last turn (your last message and everything after it)
  /clear       delete every message of this session (asks first)
  /sessions    list the sessions in this database
  /switch ID   continue session ID (a new one starts empty)
  /help        show this help
  /exit        leave (Ctrl-D does too)
Ctrl-C stops a reply; the interrupted turn is not stored."""

PROMPT = "You: "
INSTRUCTIONS = "You are a helpful assistant. Reply concisely."

#: Seconds between the offline model's streamed words, so that replies visibly stream.
OFFLINE_STREAM_DELAY = 0.01

#: Seconds the lease taken to see whether another run holds the session would last.
PROBE_LEASE = 5.0

#: Seconds to wait for an interrupted run's task to wind down before the next prompt.
WIND_DOWN_TIMEOUT = 10.0

_COMMANDS = ("/history", "/undo", "/clear", "/sessions", "/switch ", "/help", "/exit", "/quit")


def _current_time(timezone: str = "UTC") -> str:
    """Return the current date and time in an IANA time zone such as "UTC" or "Europe/Paris".

    Args:
        timezone: the IANA time zone name.
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {timezone!r}"
    return datetime.now(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


#: The chat agent's one tool, so that tool calls can be seen being stored.
current_time: FunctionTool = function_tool(_current_time, name_override="current_time")


class Chat:
    """One chat: a session in a database, an agent, and the commands acting on them.

    Turns (``turn``) are async and reach the database only through the runner and
    ``memory``; the commands are plain calls on the blocking ``memory.store``, made
    between turns, when no event loop is running.

    Args:
        memory: where the history lives; its store must be one of agentsession's
            (``rewind`` and ``session_info`` are used).
        session_id: the session to start in.
        built: the model and its settings.
        tools: give the agent the ``current_time`` tool.
    """

    def __init__(
        self, memory: StoreMemory, session_id: str, built: BuiltModel, *, tools: bool
    ) -> None:
        self.memory = memory
        # Every agentsession store (SQLite, PostgreSQL, Redis) is a CliStore.
        self.store = cast(CliStore, memory.store)
        self.session_id = check_session_id(session_id)
        self.built = built
        self.agent: Agent[Any] = Agent(
            name="Assistant",
            instructions=INSTRUCTIONS,
            model=built.model,
            model_settings=built.settings,
            tools=[current_time] if tools else [],
        )

    # -- turns -----------------------------------------------------------------------------

    async def turn(self, text: str) -> Outcome:
        """Run one streamed turn, printing it; it is stored only if it completes.

        Cancelling the task running this (Ctrl-C) stops the reply and returns
        ``"interrupted"``; any error is printed and returns ``"failed"``. Either way the
        runner has rolled the turn back, inside the run's lease, by the time
        ``stream_events()`` ends, so the session is as it was before the turn (plus
        whatever other runs stored meanwhile).
        """
        config = RunConfig(
            memory=self.memory,
            session_id=self.session_id,
            failed_runs="rollback",  # what "(this turn was not stored)" relies on
            tracing_disabled=self.built.tracing_disabled,
        )
        stream = StreamPrinter()
        result = None
        outcome: Outcome
        try:
            if await self._held_by_another_run():  # the run waits for it; say so meanwhile
                holder = await asyncio.to_thread(lease_holder, self.store, self.session_id)
                unknown = "a chat replying, or one killed whose lease has not lapsed yet"
                click.echo(
                    dim(
                        f"(waiting for session {self.session_id!r}, held by another run "
                        f"({held_by(holder, unknown)}))"
                    )
                )
            result = Runner.run_streamed(self.agent, text, run_config=config)
            async for event in result.stream_events():
                stream.event(event)
            stream.end_line()
            return "completed"
        except asyncio.CancelledError:
            stream.end_line()
            outcome = "interrupted"
            click.echo(dim("(interrupted: this turn was not stored)"))
        except Exception as exc:
            stream.end_line()
            outcome = "failed"
            click.echo(f"{label('Error:', 'red')} {type(exc).__name__}: {exc}")
            click.echo(dim("(this turn was not stored)"))
        if result is not None:
            # The turn is already rolled back; let the run's task finish before the
            # next prompt, so nothing of it is still running then.
            result.cancel()
            task = run_task(result)
            if task is not None and not task.done():
                await asyncio.wait([task], timeout=WIND_DOWN_TIMEOUT)
        return outcome

    async def _held_by_another_run(self) -> bool:
        """Whether another run holds the session's lease now (taken and given back at once
        if not)."""
        probe = f"{socket.gethostname()}:{os.getpid()}:chat-probe:{uuid.uuid4().hex}"
        if await self.memory.try_lock(self.session_id, probe, PROBE_LEASE):
            await self.memory.unlock(self.session_id, probe)
            return False
        return True

    # -- commands --------------------------------------------------------------------------

    def _count(self) -> int:
        info = self.store.session_info(self.session_id)
        return 0 if info is None else info.message_count

    def history(self) -> None:
        """Print the session's stored transcript."""
        messages = self.store.get_messages(self.session_id)
        if not messages:
            click.echo(dim(f"(session {self.session_id!r} has no messages yet)"))
            return
        click.echo(label(f"Session {self.session_id!r}: {len(messages)} messages"))
        click.echo(format_transcript(messages, numbered=True))

    def undo(self) -> None:
        """Drop the last turn: the last user message and everything after it."""
        removed = self.store.rewind(self.session_id, turns=1)
        if not removed:
            click.echo(dim("(nothing to undo)"))
            return
        click.echo(dim(f"(removed the last turn: {len(removed)} messages)"))

    def clear(self) -> None:
        """Delete every message of the session, once the user says yes (as ``clear`` asks)."""
        count = self._count()
        if not count:
            click.echo(dim(f"(session {self.session_id!r} has no messages to clear)"))
            return
        try:
            sure = click.confirm(
                f"Delete all {count} messages of session {self.session_id!r}?", default=False
            )
        except click.Abort:  # Ctrl-C or Ctrl-D at the question
            write("\n")
            sure = False
        if not sure:
            click.echo(dim("(nothing deleted)"))
            return
        self.store.clear_session(self.session_id)
        click.echo(dim(f"(cleared session {self.session_id!r}: {count} messages deleted)"))

    def sessions(self) -> None:
        """Print the database's sessions, marking the current one."""
        infos = self.store.list_sessions()
        if not infos:
            click.echo(dim("(no sessions stored yet)"))
            return
        click.echo(sessions_table(infos, current=self.session_id))

    def switch(self, session_id: str) -> None:
        """Continue another session.

        Raises:
            ValueError: ``session_id`` is empty.
        """
        self.session_id = check_session_id(session_id)
        self.greet_session()

    def greet_session(self) -> None:
        """Say which session is current and how much history it has."""
        count = self._count()
        if count:
            click.echo(
                f"Session {self.session_id!r}: {count} messages remembered (/history shows them)."
            )
        else:
            click.echo(f"Session {self.session_id!r}: new, nothing remembered yet.")

    def command(self, line: str) -> bool:
        """Run a slash command; return ``False`` when the chat should end."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/exit", "/quit"):
            return False
        actions: dict[str, Callable[[], None]] = {
            "/history": self.history,
            "/undo": self.undo,
            "/clear": self.clear,
            "/sessions": self.sessions,
            "/help": lambda: click.echo(HELP),
        }
        if name == "/switch":
            if not argument:
                click.echo("Usage: /switch ID")
            else:
                self.switch(argument)
        elif name in actions:
            actions[name]()
        else:
            click.echo(f"Unknown command {name!r}; /help lists the commands.")
        return True


@contextlib.contextmanager
def _cancel_on_sigint(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Iterator[None]:
    """While inside, Ctrl-C cancels ``task`` (once) instead of raising KeyboardInterrupt."""

    cancelled = False

    def cancel() -> None:
        nonlocal cancelled
        if not task.done() and not cancelled:  # a second Ctrl-C must not cut the clean-up
            cancelled = True
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, cancel)
    except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
        previous = signal.signal(signal.SIGINT, lambda *_: loop.call_soon_threadsafe(cancel))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _setup_readline(history_file: Path) -> Callable[[], None]:
    """Turn on line editing, input history and command completion; return the saver."""
    try:
        import readline
    except ImportError:  # not on this platform: plain input() still works
        return lambda: None
    with contextlib.suppress(OSError):
        readline.read_history_file(history_file)
    readline.set_history_length(1000)

    def complete(text: str, state: int) -> str | None:
        matches = [command for command in _COMMANDS if command.startswith(text)]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")

    def save() -> None:
        with contextlib.suppress(OSError):
            history_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            history_file.touch(mode=0o600)
            readline.write_history_file(history_file)

    return save


def _read_line() -> str | None:
    """One line from the user; ``None`` at end of input (Ctrl-D)."""
    while True:
        try:
            return input(PROMPT)
        except EOFError:
            write("\n")
            return None
        except KeyboardInterrupt:
            write("\n" + dim("(Ctrl-D or /exit leaves)") + "\n")


def _describe(store: object) -> str:
    """How the chat's header names a store it was not told the name of."""
    if isinstance(store, SQLiteStore):
        return str(store.path or ":memory:")
    return type(store).__name__


def run_chat(
    memory: StoreMemory,
    session_id: str,
    choice: ModelChoice,
    *,
    tools: bool = True,
    history_file: Path | None = None,
    database: str | None = None,
) -> None:
    """Chat on the terminal until /exit or Ctrl-D, then close ``memory``.

    Args:
        memory: the database (any ``StoreMemory``: SQLite, PostgreSQL, Redis).
        session_id: the session to start in.
        choice: the model.
        tools: give the agent the ``current_time`` tool (turn off for models without
            tool support).
        history_file: where input history is kept (none if ``None``).
        database: how the header names the database, printed as it is, so it must not
            hold a password (the command line passes the masked URL). By default the
            SQLite file's path (``:memory:`` for none), else the store's class name.

    Raises:
        ValueError: ``session_id`` is empty.
    """
    loop = asyncio.new_event_loop()
    built = choice.build(stream_delay=OFFLINE_STREAM_DELAY)
    save_history = _setup_readline(history_file) if history_file else (lambda: None)
    try:
        chat = Chat(memory, session_id, built, tools=tools)
        where = _describe(memory.store) if database is None else database
        click.echo(label(f"agentsession chat: {where}"))
        click.echo(choice.describe())
        chat.greet_session()
        click.echo(dim("Type a message, /help for commands. Ctrl-C stops a reply, Ctrl-D leaves."))
        while True:
            line = _read_line()
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not chat.command(line):
                        break
                    continue
                task = loop.create_task(chat.turn(line))
                with _cancel_on_sigint(loop, task):
                    loop.run_until_complete(task)
            except (KeyboardInterrupt, asyncio.CancelledError):
                write("\n" + dim("(interrupted)") + "\n")
            except (ValueError, StoreError) as exc:
                click.echo(f"{label('Error:', 'red')} {exc}")
        sys.stdout.flush()
    finally:
        save_history()
        loop.run_until_complete(built.aclose())
        loop.close()
        memory.close()
