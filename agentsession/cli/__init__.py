"""The ``agentsession`` command: a demo, a chat, and commands to inspect sessions.

``agentsession demo`` shows a conversation being remembered, with or without an OpenAI
key; ``agentsession chat`` is an interactive chat that remembers across restarts;
``sessions``, ``show`` and ``clear`` look at and tidy a database; ``ui`` shows it in
the browser. See ``docs/cli.md``.
"""

from __future__ import annotations

from typing import Any

import click

from .. import __version__
from ..exceptions import (
    DecryptionError,
    MissingDependencyError,
    NotSupportedError,
    SessionBusy,
    StoreError,
)
from ._db import cli_words, data_dir, is_default, open_memory, redact, resolve_db
from .compacting import compact, uncompact
from .history import COMMANDS as HISTORY_COMMANDS
from .inspecting import clear, db_option, sessions, show
from .keys import COMMANDS as KEY_COMMANDS
from .models import choose_model
from .models import model_options as _model_options
from .ui import ui
from .usage import usage

__all__ = ("cli", "main")


class _Group(click.Group):
    """A click group that reports storage failures as one-line errors, not tracebacks.

    A ``StoreError``, ``NotSupportedError``, ``DecryptionError``,
    ``MissingDependencyError`` or ``SessionBusy`` a command did not turn into a message
    itself becomes ``click.ClickException`` (exit code 1), any URL password in its
    message masked.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (
            StoreError,
            NotSupportedError,
            DecryptionError,
            MissingDependencyError,
            SessionBusy,
        ) as exc:
            raise click.ClickException(redact(cli_words(str(exc)))) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The commands in the order a new user meets them, not alphabetically."""
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentsession")
def cli() -> None:
    """Automatic session memory for the OpenAI Agents SDK, on the command line.

    Start with 'agentsession demo'. Without OPENAI_API_KEY, an offline model that ships
    with agentsession answers (from the session's memory only) and says so.
    """


@cli.command()
@db_option
@click.option(
    "--session",
    "session_id",
    default="conversation_123",
    show_default=True,
    metavar="ID",
    help="Session to use; the demo clears it first, so every run starts the same way.",
)
@_model_options
def demo(
    db: str | None, session_id: str, model: str | None, base_url: str | None, api: str
) -> None:
    """Show a conversation being remembered (start here).

    Runs the spec's example (three turns about the Golden Gate Bridge on one session),
    prints what was stored, then asks a fourth question through a fresh memory object on
    the same database, as a restarted program would. The session is cleared first.
    """
    from .demo import run_demo

    if not session_id:
        raise click.BadParameter("a session id cannot be empty", param_hint="--session")
    choice = choose_model(model, base_url, api)
    run_demo(resolve_db(db), choice, session_id)


@cli.command()
@db_option
@click.option(
    "--session",
    "session_id",
    default="default",
    show_default=True,
    metavar="ID",
    help="Session to chat in (created on its first message).",
)
@_model_options
@click.option(
    "--no-tools",
    is_flag=True,
    help="Do not offer the model the current_time tool (for models without tool support).",
)
def chat(
    db: str | None,
    session_id: str,
    model: str | None,
    base_url: str | None,
    api: str,
    no_tools: bool,
) -> None:
    """Chat with an agent that remembers across restarts.

    Replies stream as they arrive. Commands: /history, /undo, /clear, /sessions,
    /switch ID, /help, /exit. Ctrl-C stops a reply (the turn is not stored), Ctrl-D leaves.
    """
    from .chat import run_chat

    if not session_id:
        raise click.BadParameter("a session id cannot be empty", param_hint="--session")
    choice = choose_model(model, base_url, api)
    target = resolve_db(db)
    memory = open_memory(target, create_folder=is_default(target))
    run_chat(
        memory,
        session_id,
        choice,
        tools=not no_tools,
        history_file=data_dir() / "chat_history",
        database=str(target),
    )


cli.add_command(sessions)
cli.add_command(show)
cli.add_command(clear)
cli.add_command(compact)
cli.add_command(uncompact)
cli.add_command(usage)
for _command in (*HISTORY_COMMANDS, *KEY_COMMANDS):
    cli.add_command(_command)
cli.add_command(ui)


def main() -> None:
    """Run the ``agentsession`` command line (exits the process)."""
    cli(prog_name="agentsession")
