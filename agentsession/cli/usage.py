"""``agentsession usage``: what each session's runs have cost, from the usage ledger.

Every run through the runner with memory leaves a run record (see ``protocol.RunRecord``);
this command reads them. Like ``sessions``, it never creates a database file.
"""

from __future__ import annotations

import json

import click

from ._db import open_store, resolve_db
from .inspecting import db_option
from .render import label, run_to_json, runs_table, usage_table, usage_to_json

__all__ = ("usage",)


@click.command()
@click.argument("session_id", required=False)
@db_option
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many runs (with SESSION_ID) or sessions to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def usage(session_id: str | None, db: str | None, limit: int, as_json: bool) -> None:
    """Show what sessions have cost: tokens and model calls, from every recorded run.

    Without SESSION_ID, a table of the sessions that spent the most tokens. With it, that
    session's totals and its newest runs (agent, model, requests, tokens, outcome).
    """
    if session_id is not None and not session_id:
        raise click.BadParameter("a session id cannot be empty", param_hint="SESSION_ID")
    target = resolve_db(db)
    with open_store(target) as store:
        if session_id is None:
            ranked = store.usage_by_session(limit=limit)
        else:
            totals = store.usage(session_id)
            runs = store.runs(session_id, limit=limit)
    if session_id is None:
        if as_json:
            listed = [{"session_id": sid, **usage_to_json(used)} for sid, used in ranked]
            click.echo(json.dumps(listed, indent=2, ensure_ascii=False))
        elif not ranked:
            click.echo(f"No runs recorded in {target}.")
        else:
            click.echo(usage_table(ranked))
        return
    if as_json:
        data = {
            "session_id": session_id,
            "usage": usage_to_json(totals),
            "runs": [run_to_json(run) for run in runs],
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if not totals.runs:
        click.echo(f"No runs recorded for session {session_id!r} in {target}.")
        return
    click.echo(
        label(f"Session {session_id!r}: {totals.total_tokens} tokens")
        + f" ({totals.input_tokens} in, {totals.output_tokens} out, "
        f"{totals.cached_input_tokens} cached, {totals.reasoning_tokens} reasoning) "
        f"in {totals.runs} runs, {totals.requests} model calls"
    )
    click.echo(runs_table(runs))
