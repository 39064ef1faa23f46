"""``agentsession sessions | show | clear``: look at and tidy a database.

None of these creates a database file: a path that does not exist, or a file that is not
an agentsession database, is reported with a non-zero exit code. A server URL only has to
answer (see ``_db.open_store``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TypeVar

import click

from ..compaction import is_summary
from ..exceptions import SessionBusy, StoreError
from ..protocol import LeaseHolder
from ._db import CliStore, Database, open_store, resolve_db
from .render import dim, format_transcript, held_by, label, session_to_json, sessions_table

__all__ = (
    "clear",
    "db_option",
    "lease_holder",
    "no_wait_option",
    "sessions",
    "show",
    "waiting_for_runs",
)

T = TypeVar("T")

db_option = click.option(
    "--db",
    metavar="PATH|URL",
    envvar="AGENTSESSION_DB",
    show_envvar=True,
    help="Database file, or a postgresql:// or redis:// URL (default: "
    "~/.local/share/agentsession/sessions.db, or $XDG_DATA_HOME/agentsession/sessions.db).",
)


no_wait_option = click.option(
    "--no-wait",
    is_flag=True,
    help="Fail at once if a run (a chat replying, say) holds the session, instead of "
    "waiting for it to end.",
)


def lease_holder(store: CliStore, session_id: str) -> LeaseHolder | None:
    """``store.lease_holder(session_id)``, or ``None`` if the store could not tell (a
    waiting message then names no holder rather than failing)."""
    try:
        return store.lease_holder(session_id)
    except StoreError:
        return None


def waiting_for_runs(store: CliStore, session_id: str, no_wait: bool, work: Callable[[], T]) -> T:
    """Call ``work`` (which changes ``session_id``) once no run holds the session.

    The store's calls that change a session wait for a run holding it; this says so on
    stderr while it waits, for as long as it takes (Ctrl-C stops it), or with
    ``no_wait`` fails at once.

    Raises:
        click.ClickException: ``no_wait`` and a run holds the session.
    """
    store.lock_timeout = 0
    try:
        return work()
    except SessionBusy:
        holder = lease_holder(store, session_id)
        if no_wait:
            raise click.ClickException(
                f"session {session_id!r} is in use by a run ({held_by(holder)}); "
                "try again later, or leave out --no-wait to wait for it"
            ) from None
    click.echo(
        f"Waiting for session {session_id!r}, held by another run ({held_by(holder)}); "
        "Ctrl-C to give up.",
        err=True,
    )
    store.lock_timeout = math.inf
    return work()


def _session_id(value: str) -> str:
    if not value:
        raise click.BadParameter("a session id cannot be empty", param_hint="SESSION_ID")
    return value


def _message_count(store: CliStore, session_id: str) -> int | None:
    """The session's message count, or ``None`` if the database has no such session."""
    for info in store.list_sessions():
        if info.session_id == session_id:
            return info.message_count
    return None


def _require_session(store: CliStore, session_id: str, target: Database) -> int:
    """The session's message count.

    Raises:
        click.ClickException: the database has no such session (``target`` is named,
            a URL with its password masked).
    """
    count = _message_count(store, session_id)
    if count is None:
        raise click.ClickException(
            f"no session {session_id!r} in {target} ('agentsession sessions' lists them)"
        )
    return count


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def sessions(db: str | None, as_json: bool) -> None:
    """List sessions, newest activity first.

    Shows each session's id, message count, the tokens its runs have used (see
    'agentsession usage'), when it was created and when it was last active (local
    time). With --json, the same as a JSON list (times in UTC).
    """
    target = resolve_db(db)
    with open_store(target, reading=True) as store:
        infos = store.list_sessions()
        tokens = {sid: used.total_tokens for sid, used in store.usage_by_session()}
    if as_json:
        listed = [
            {**session_to_json(info), "total_tokens": tokens.get(info.session_id, 0)}
            for info in infos
        ]
        click.echo(json.dumps(listed, indent=2))
    elif not infos:
        click.echo(f"No sessions in {target}.")
    else:
        click.echo(sessions_table(infos, tokens=tokens))


@click.command()
@click.argument("session_id")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the stored messages as JSON.")
@click.option(
    "--archived",
    is_flag=True,
    help="Show the turns compaction archived in place of their summaries "
    "(see 'agentsession compact').",
)
def show(session_id: str, db: str | None, as_json: bool, archived: bool) -> None:
    """Print a session's transcript, as people read it.

    A compaction's summary is labelled as one. With --archived, the history as it was
    before any compaction: the archived messages, marked, where the summaries stand.
    With --json, the stored messages (Responses API input items), oldest first.
    """
    session_id = _session_id(session_id)
    target = resolve_db(db)
    with open_store(target, reading=True) as store:
        _require_session(store, session_id, target)
        messages = store.get_messages(session_id)
        if archived:
            visible = messages
            messages = store.get_messages(session_id, include_archived=True)
    if as_json:
        click.echo(json.dumps(messages, indent=2, ensure_ascii=False))
        return
    click.echo(label(f"Session {session_id!r} in {target}: {len(messages)} messages"))
    if not messages:
        return
    transcript = format_transcript(messages, numbered=True)
    if archived:
        # What is not visible (besides the summaries) is archived: the oldest messages.
        kept = len([item for item in visible if not is_summary(item)])
        hidden = max(0, len(messages) - kept)
        lines = transcript.split("\n")
        entries = _entry_starts(lines, len(messages))
        for index in entries[:hidden]:
            lines[index] += " " + dim("(archived)")
        transcript = "\n".join(lines)
    click.echo(transcript)


def _entry_starts(lines: list[str], count: int) -> list[int]:
    """The line index of each of ``count`` numbered entries of a transcript."""
    width = len(str(count))
    starts = []
    number = 1
    for index, line in enumerate(lines):
        if click.unstyle(line)[:width].strip() == str(number):
            starts.append(index)
            number += 1
    return starts


@click.command()
@click.argument("session_id")
@db_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@no_wait_option
def clear(session_id: str, db: str | None, yes: bool, no_wait: bool) -> None:
    """Delete a session (asks first unless --yes).

    Deletes SESSION_ID and all its messages. A run holding the session (a chat
    replying) is waited for first, unless --no-wait.
    """
    session_id = _session_id(session_id)
    target = resolve_db(db)
    with open_store(target) as store:
        count = _require_session(store, session_id, target)
        if not yes:
            click.confirm(
                f"Delete session {session_id!r} ({count} messages) from {target}?", abort=True
            )
        waiting_for_runs(store, session_id, no_wait, lambda: store.clear_session(session_id))
    click.echo(f"Deleted session {session_id!r} ({count} messages).")
