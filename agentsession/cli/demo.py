"""``agentsession demo``: the spec's complete example, then proof that it was stored.

Three turns about the Golden Gate Bridge on session ``conversation_123`` (cleared first, so
that every run of the demo starts the same way), the stored transcript, a fourth turn
through a fresh memory object of the same kind on the same database (a SQLite file or a
server), as a restarted program would make, and what the four runs cost (the usage ledger).
"""

from __future__ import annotations

import asyncio
import shlex

import click

from ..memory import StoreMemory
from ..runner import RunConfig, Runner
from ._db import Database, db_argument, is_default, open_memory, redact
from .models import BuiltModel, ModelChoice
from .render import dim, format_transcript, label

__all__ = ("DEMO_SESSION", "FOURTH_TURN", "TURNS", "run_demo")

#: The session the demo uses (the spec's), cleared at the start of every demo.
DEMO_SESSION = "conversation_123"

#: The spec's three turns.
TURNS = (
    "What city is the Golden Gate Bridge in?",
    "What state is it in?",
    "What's the population of that state?",
)

#: Asked through a fresh memory object: only the stored history can answer it.
FOURTH_TURN = "What was the first thing I asked you?"

INSTRUCTIONS = "Reply very concisely."


async def _turn(
    agent_model: BuiltModel, memory: StoreMemory, session_id: str, question: str
) -> None:
    from agents import Agent

    agent = Agent(
        name="Assistant",
        instructions=INSTRUCTIONS,
        model=agent_model.model,
        model_settings=agent_model.settings,
    )
    config = RunConfig(
        memory=memory, session_id=session_id, tracing_disabled=agent_model.tracing_disabled
    )
    click.echo(f"{label('User:', 'green')} {question}")
    result = await Runner.run(agent, question, run_config=config)
    click.echo(f"{label('Assistant:', 'cyan')} {result.final_output}")


def _command(*words: str) -> str:
    return " ".join(shlex.quote(word) for word in words)


async def _demo(target: Database, choice: ModelChoice, session_id: str) -> None:
    built = choice.build()
    try:
        memory = open_memory(target, create_folder=is_default(target))
        try:
            cleared = len(await memory.get_messages(session_id))
            await memory.clear_session(session_id)
            note = f", cleared of {cleared} messages from an earlier run" if cleared else ""
            click.echo(
                label("agentsession demo: three turns on one session, then one after a restart")
            )
            click.echo(f"Database: {target} (session {session_id!r}{note})")
            click.echo(choice.describe())
            for question in TURNS:
                click.echo()
                await _turn(built, memory, session_id, question)
            stored = await memory.get_messages(session_id)
        finally:
            memory.close()
        click.echo()
        click.echo(label(f"Stored in {target}, session {session_id!r} ({len(stored)} messages):"))
        click.echo(format_transcript(stored, numbered=True))
        click.echo()
        kind = type(memory).__name__
        click.echo(label(f"A fresh {kind} on the same database, as after a restart:"))
        fresh = open_memory(target, create_folder=False)
        try:
            await _turn(built, fresh, session_id, FOURTH_TURN)
            spent = await fresh.usage(session_id)
            runs = await fresh.runs(session_id)
        finally:
            fresh.close()
        click.echo()
        estimated = " (estimated by the offline model)" if choice.offline else ""
        click.echo(
            label(f"What the runs cost, from the usage ledger{estimated}:")
            + f" {spent.total_tokens} tokens ({spent.input_tokens} in, "
            f"{spent.output_tokens} out) in {spent.runs} runs, {spent.requests} model calls"
        )
        for number, run in enumerate(runs[::-1], 1):
            click.echo(
                dim(
                    f"  run {number}: {run.total_tokens} tokens ({run.input_tokens} in, "
                    f"{run.output_tokens} out), {run.requests} model calls, "
                    f"{run.items_added} items stored, {run.outcome}"
                )
            )
    finally:
        await built.aclose()
    # The commands to type next: a URL as the user gave it (password and all), since a
    # masked one would not work.
    db = () if is_default(target) else ("--db", db_argument(target))
    click.echo()
    click.echo("The history survived. Continue the conversation, or look at it:")
    click.echo(dim(f"  {_command('agentsession', 'chat', *db, '--session', session_id)}"))
    click.echo(dim(f"  {_command('agentsession', 'show', session_id, *db)}"))
    click.echo(dim(f"  {_command('agentsession', 'usage', session_id, *db)}"))
    compact = ("agentsession", "compact", session_id, "--keep-turns", "1", *db)
    click.echo(
        dim(f"  {_command(*compact)}") + "   (summarise the older turns, keep them archived)"
    )


def run_demo(target: Database, choice: ModelChoice, session_id: str = DEMO_SESSION) -> None:
    """Run the demo on ``target`` (a SQLite file or a server URL), printing for people.

    The database is named with any URL password masked, except in the closing hints,
    which are commands to type (``agentsession chat --db URL``).

    Raises:
        click.ClickException: the database cannot be used (not an agentsession file, a
            missing driver, an unreachable server), or a model call failed (a wrong key,
            an unreachable model server); the message says which.
    """
    import openai
    from agents.exceptions import AgentsException

    from ..exceptions import StoreError

    try:
        asyncio.run(_demo(target, choice, session_id))
    except (openai.OpenAIError, AgentsException) as exc:
        raise click.ClickException(f"the model call failed: {type(exc).__name__}: {exc}") from exc
    except StoreError as exc:
        raise click.ClickException(redact(str(exc))) from exc
