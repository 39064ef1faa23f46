"""``agentsession search | export | import | prune | fork | rewind | meta``: history work.

Like the inspecting commands, none of these creates a database file (``import --create``
excepted): a missing path or a file that is not an agentsession database is reported
with a non-zero exit code, as is any caller mistake or a feature the database's engine
lacks (search on Redis), without a traceback.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from ..exceptions import NotSupportedError
from ._db import create_store, open_store, resolve_db
from .inspecting import _require_session, _session_id, db_option
from .render import format_transcript, label

__all__ = ("COMMANDS", "parse_duration")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` as a ``timedelta``.

    Raises:
        click.BadParameter: anything else.
    """
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(
            f"{text!r} is not a duration like 30d, 12h, 90m, 45s or 2w", param_hint="--older-than"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@contextlib.contextmanager
def _caller_errors() -> Iterator[None]:
    """Report the store's ValueError / TypeError / NotSupportedError as one-line errors.

    Raises:
        click.ClickException: with the exception's message (exit code 1).
    """
    try:
        yield
    except (ValueError, TypeError, NotSupportedError) as exc:
        raise click.ClickException(str(exc)) from exc


def _progress(length: int | None, label_text: str) -> Any:
    """A progress bar on stderr (hidden when stderr is not a terminal)."""
    return click.progressbar(length=length, label=label_text, file=sys.stderr, show_pos=True)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.command()
@click.argument("query")
@db_option
@click.option("--session", "session_id", metavar="ID", help="Search this session only.")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--raw",
    is_flag=True,
    help='QUERY is the engine\'s own syntax: FTS5 on SQLite (OR, NOT, "phrase", pre*), '
    "tsquery on PostgreSQL (&, |, !, pre:*).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def search(
    query: str, db: str | None, session_id: str | None, limit: int, raw: bool, as_json: bool
) -> None:
    """Find messages containing every word of QUERY, best match first."""
    with open_store(resolve_db(db)) as store, _caller_errors():
        hits = store.search(query, session_id=session_id or None, limit=limit, raw=raw)
    if as_json:
        _echo_json(
            [
                {
                    "session_id": hit.session_id,
                    "position": hit.position,
                    "rank": hit.rank,
                    "snippet": hit.snippet,
                    "message": hit.message,
                }
                for hit in hits
            ]
        )
    elif not hits:
        click.echo(f"No messages match {query!r}.")
    else:
        for hit in hits:
            click.echo(f"{label(f'{hit.session_id} #{hit.position}')}  {hit.snippet}")


@click.command()
@click.argument("output", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@db_option
@click.option(
    "--session", "session_ids", multiple=True, metavar="ID", help="Only this session (repeatable)."
)
@click.option(
    "--decrypt",
    is_flag=True,
    help="An encrypted database: write plaintext (default: ciphertext, which imports "
    "into a database with the same keys).",
)
def export(output: str, db: str | None, session_ids: tuple[str, ...], decrypt: bool) -> None:
    """Write sessions as JSON Lines to OUTPUT (default: standard output).

    One header line per session (its record and metadata) then one line per message;
    see docs/history.md. 'agentsession import' reads it back exactly.
    """
    with open_store(resolve_db(db)) as store, _caller_errors():
        total = len(session_ids) if session_ids else len(store.list_sessions())
        with (
            click.open_file(output, "w", encoding="utf-8") as fp,
            _progress(total, "Exporting sessions") as bar,
        ):
            count = store.export_jsonl(
                fp, session_ids=session_ids or None, progress=bar.update, decrypt=decrypt
            )
    if output != "-":
        click.echo(f"Exported {count} sessions to {output}.", err=True)


def _lines(fp: Iterable[bytes], bar: Any) -> Iterator[str]:
    for number, raw in enumerate(fp, 1):
        bar.update(len(raw))
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"line {number}: not UTF-8 ({exc})") from None


@click.command("import")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True))
@db_option
@click.option(
    "--on-conflict",
    type=click.Choice(["error", "skip", "replace"]),
    default="error",
    show_default=True,
    help="What to do with a session the database already has.",
)
@click.option(
    "--create",
    is_flag=True,
    help="Create the database file if it is missing (a URL needs no --create).",
)
def import_(source: str, db: str | None, on_conflict: str, create: bool) -> None:
    """Read sessions from a JSON Lines file written by 'agentsession export'.

    Each session is stored whole or not at all; a bad line is reported with its number.
    """
    target = resolve_db(db)
    # --create is about files: a server URL is opened as it is.
    store = create_store(target) if create and isinstance(target, Path) else open_store(target)
    size = None if source == "-" else _size(source)
    with store, click.open_file(source, "rb") as fp, _progress(size, "Importing") as bar:
        with _caller_errors():
            count = store.import_jsonl(_lines(fp, bar), on_conflict=on_conflict)  # type: ignore[arg-type]
    click.echo(f"Imported {count} sessions into {target}.")


def _size(source: str) -> int:
    try:
        return Path(source).stat().st_size
    except OSError as exc:
        raise click.ClickException(f"cannot read {source}: {exc.strerror}") from exc


@click.command()
@db_option
@click.option("--older-than", metavar="AGE", help="Delete sessions idle longer (30d, 12h, 2w).")
@click.option(
    "--keep-last",
    type=click.IntRange(min=0),
    metavar="N",
    help="Trim every session to its newest N messages.",
)
@click.option(
    "--batch",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Messages deleted per transaction.",
)
@click.option("--dry-run", is_flag=True, help="Only say how many messages would go.")
@click.option("--vacuum", is_flag=True, help="Then give the freed space back to the disk.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def prune(
    db: str | None,
    older_than: str | None,
    keep_last: int | None,
    batch: int,
    dry_run: bool,
    vacuum: bool,
    yes: bool,
) -> None:
    """Delete idle sessions and/or trim long ones, a batch at a time."""
    age = None if older_than is None else parse_duration(older_than)
    if age is None and keep_last is None:
        raise click.UsageError("give --older-than, --keep-last or both")
    target = resolve_db(db)
    with open_store(target) as store, _caller_errors():
        due = store.prune(older_than=age, keep_last=keep_last, dry_run=True)
        if dry_run or due == 0:
            click.echo(f"{due} messages would be deleted from {target}.")
            return
        if not yes:
            click.confirm(f"Delete {due} messages from {target}?", abort=True)
        with _progress(due, "Pruning") as bar:
            removed = store.prune(
                older_than=age, keep_last=keep_last, batch=batch, progress=bar.update
            )
        if vacuum:
            store.vacuum()
    click.echo(f"Deleted {removed} messages.")


@click.command()
@click.argument("session_id")
@click.argument("new_session_id")
@db_option
@click.option(
    "--at", type=click.IntRange(min=0), metavar="N", help="Copy messages 1..N only (default: all)."
)
def fork(session_id: str, new_session_id: str, db: str | None, at: int | None) -> None:
    """Copy SESSION_ID's history (and metadata) into a new session NEW_SESSION_ID."""
    with open_store(resolve_db(db)) as store, _caller_errors():
        copied = store.fork(_session_id(session_id), _session_id(new_session_id), at=at)
    click.echo(f"Forked {session_id!r} into {new_session_id!r} ({copied} messages).")


@click.command()
@click.argument("session_id")
@db_option
@click.option(
    "--turns",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many turns to remove.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the removed messages as JSON.")
def rewind(session_id: str, db: str | None, turns: int, yes: bool, as_json: bool) -> None:
    """Remove the last turns of a session (a turn starts at a user message)."""
    session_id = _session_id(session_id)
    target = resolve_db(db)
    with open_store(target) as store, _caller_errors():
        _require_session(store, session_id, target)
        if not yes:
            click.confirm(f"Remove the last {turns} turn(s) of {session_id!r}?", abort=True)
        removed = store.rewind(session_id, turns=turns)
    if as_json:
        _echo_json(removed)
        return
    click.echo(f"Removed {len(removed)} messages from {session_id!r}.")
    if removed:
        click.echo(format_transcript(removed))


def _value(text: str) -> Any:
    """A ``KEY=VALUE`` value: JSON if it parses as JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@click.command()
@click.argument("session_id")
@click.argument("changes", nargs=-1, metavar="[KEY=VALUE]...")
@db_option
@click.option("--unset", multiple=True, metavar="KEY", help="Remove KEY (repeatable).")
@click.option("--replace", is_flag=True, help="Replace all metadata with the KEY=VALUEs given.")
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def meta(
    session_id: str,
    changes: tuple[str, ...],
    db: str | None,
    unset: tuple[str, ...],
    replace: bool,
    as_json: bool,
) -> None:
    """Show or change a session's metadata.

    Without KEY=VALUE or --unset, prints it. A VALUE that is valid JSON (42, true,
    ["a","b"], "007") is stored as that JSON; anything else as text.
    """
    session_id = _session_id(session_id)
    updates: dict[str, Any] = {}
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{change!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        updates[key] = _value(value)
    target = resolve_db(db)
    with open_store(target) as store, _caller_errors():
        _require_session(store, session_id, target)
        if replace:
            store.set_metadata(session_id, updates)
        elif updates or unset:
            store.update_metadata(session_id, updates, remove=list(unset))
        info = store.session_info(session_id)
    metadata = info.metadata if info is not None else {}
    if as_json:
        _echo_json(metadata)
    elif not metadata:
        click.echo(f"Session {session_id!r} has no metadata.")
    else:
        for key, value in metadata.items():
            click.echo(f"{key} = {json.dumps(value, ensure_ascii=False)}")


#: In the order ``agentsession --help`` lists them.
COMMANDS = (search, export, import_, prune, fork, rewind, meta)
