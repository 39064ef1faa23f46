"""The summary model call of a compaction, and its entry in the usage ledger.

``summarize`` runs the summary model through the SDK's runner (not agentsession's: the
request must not be stored as a turn of the session, and the compaction holds the
session's lease already), reads what it spent as a run does (``_ledger.RunLedger``) and
returns the session's ``RunRecord`` of it, which the caller stores with
``add_messages(session_id, [], run=record)``: a compaction's model call is a run of the
session in its usage ledger, with ``items_added`` 0, whatever became of the compaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import agents
from agents import Agent

from ._ledger import RunLedger, outcome_of
from .compaction import DEFAULT_INSTRUCTIONS, summary_request
from .protocol import RunRecord

__all__ = ("summary_agent", "summarize")

#: The name of the agent a compaction runs, as its run records show it.
AGENT_NAME = "agentsession compaction"


def summary_agent(model: Any, instructions: str | None) -> Agent[Any]:
    """The agent that writes the summary: ``model`` if it is an ``Agent`` (with
    ``instructions`` in place of its own, when given), else a plain agent on ``model``.

    Raises:
        TypeError: ``model`` is not a ``Model``, a str, an ``Agent`` or ``None``;
            ``instructions`` not a str or ``None``.
    """
    if instructions is not None and not isinstance(instructions, str):
        raise TypeError(f"instructions must be a str or None, got {instructions!r:.80}")
    if isinstance(model, Agent):
        return model if instructions is None else model.clone(instructions=instructions)
    if not (model is None or isinstance(model, (str, agents.Model))):
        raise TypeError(
            f"model must be an agents Model, a model name or an Agent, got {model!r:.80}"
        )
    return Agent(name=AGENT_NAME, instructions=instructions or DEFAULT_INSTRUCTIONS, model=model)


async def summarize(
    agent: Agent[Any],
    items: Sequence[dict[str, Any]],
    session_id: str,
    tracing_disabled: bool = False,
) -> tuple[str | None, RunRecord, BaseException | None]:
    """Ask ``agent`` for a summary of ``items`` (traced unless ``tracing_disabled``, as
    the run that compacts says).

    Returns:
        ``(summary text or None, the run's record, the error or None)``: the record is
        made whether the call succeeded or not, so what it spent is never lost.
    """
    from .runner import DEFAULT_PROVIDER  # the runner's module imports the memories

    # The provider agentsession's runs use: one OpenAI client per event loop.
    config = agents.RunConfig(model_provider=DEFAULT_PROVIDER, tracing_disabled=tracing_disabled)
    ledger = RunLedger(agent, config)
    request = summary_request(items)
    kwargs = ledger.watch(request, {"run_config": config})
    ledger.start()
    try:
        result = await agents.Runner.run(agent, request, **kwargs)
    except BaseException as exc:  # recorded, then raised by the caller
        return None, ledger.record(session_id, _run_id(), 0, outcome_of(type(exc))), exc
    text = result.final_output
    summary = text if isinstance(text, str) else str(text)
    return summary.strip(), ledger.record(session_id, _run_id(), 0, "completed"), None


def _run_id() -> str:
    return f"compaction:{uuid.uuid4().hex}"
