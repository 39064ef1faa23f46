"""``agentsession compact | uncompact``: summarise a session's older turns, or undo it.

``compact`` asks a model (``--model``; the offline model without ``OPENAI_API_KEY``) for
a summary of every turn before the newest ``--keep-turns`` and archives them (see
``docs/compaction.md``); ``uncompact`` puts back exactly what the newest compaction
archived. Both hold the session's run lease while they work: a run holding the session
(a chat replying) is waited for first, unless ``--no-wait``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from ..exceptions import NotSupportedError
from ._db import cli_words, open_store, resolve_db
from .inspecting import _require_session, _session_id, db_option, no_wait_option, waiting_for_runs
from .models import ModelChoice, choose_model, model_options

if TYPE_CHECKING:
    from ..protocol import CompactionRecord
    from ._db import CliStore

__all__ = ("compact", "uncompact")

#: The library's words for a parameter, and the command line's for the same flag.
_FLAG_WORDS = ((re.compile(r"\bkeep_turns=(\d+)"), r"--keep-turns \1"),)


def _in_flag_words(message: str) -> str:
    for pattern, flag in _FLAG_WORDS:
        message = pattern.sub(flag, message)
    return cli_words(message)


def _compact(
    store: CliStore, session_id: str, choice: ModelChoice, keep_turns: int
) -> CompactionRecord:
    """``memory.compact`` on ``store``, the model built on the loop that runs it."""
    from .._loop_thread import run_blocking
    from ..memory import StoreMemory

    memory = StoreMemory(store, max_threads=1)

    async def work() -> CompactionRecord:
        built = choice.build()
        if built.tracing_disabled:  # as the chat's runs: no traces for another provider
            from agents import set_tracing_disabled

            set_tracing_disabled(True)
        try:
            return await memory.compact(session_id, model=built.model, keep_turns=keep_turns)
        finally:
            await built.aclose()

    try:
        return run_blocking(work())
    finally:
        memory._threads.close()  # the store is the command's: it closes it


@click.command()
@click.argument("session_id")
@db_option
@click.option(
    "--keep-turns",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="K",
    help="How many of the newest turns to keep as they are.",
)
@model_options
@no_wait_option
def compact(
    session_id: str,
    db: str | None,
    keep_turns: int,
    model: str | None,
    base_url: str | None,
    api: str,
    no_wait: bool,
) -> None:
    """Summarise a session's older turns and archive them.

    Every turn before the newest K is replaced by one summary written by the model;
    the originals are archived, not deleted: 'agentsession uncompact' puts them back,
    and 'agentsession show --archived' prints them. The model's call is recorded in
    the session's usage ('agentsession usage').
    """
    session_id = _session_id(session_id)
    target = resolve_db(db)
    choice = choose_model(model, base_url, api)
    with open_store(target) as store:
        _require_session(store, session_id, target)
        try:
            record = waiting_for_runs(
                store, session_id, no_wait, lambda: _compact(store, session_id, choice, keep_turns)
            )
        except (ValueError, TypeError, NotSupportedError) as exc:
            raise click.ClickException(_in_flag_words(str(exc))) from exc
        except Exception as exc:
            import openai
            from agents.exceptions import AgentsException

            if not isinstance(exc, (openai.OpenAIError, AgentsException)):
                raise
            # Nothing was changed; what the call spent is in the session's usage.
            raise click.ClickException(
                f"the model call failed: {type(exc).__name__}: {exc}"
            ) from exc
    model_name = "the offline model" if choice.offline else record.model or choice.name
    click.echo(
        f"Compacted {session_id!r}: {record.compacted_items} messages summarised by "
        f"{model_name} and archived, {record.kept_items} kept; about "
        f"{record.tokens_before} tokens down to {record.tokens_after}."
    )


@click.command()
@click.argument("session_id")
@db_option
@no_wait_option
def uncompact(session_id: str, db: str | None, no_wait: bool) -> None:
    """Undo a session's newest compaction: the archived messages go back, exactly.

    The summary is removed. Run it again to undo earlier compactions, newest first.
    """
    session_id = _session_id(session_id)
    target = resolve_db(db)
    with open_store(target) as store:
        _require_session(store, session_id, target)
        record = waiting_for_runs(store, session_id, no_wait, lambda: store.uncompact(session_id))
    if record is None:
        raise click.ClickException(f"session {session_id!r} has no compaction to undo")
    click.echo(
        f"Uncompacted {session_id!r}: {record.compacted_items} archived messages put back, "
        "the summary removed."
    )
