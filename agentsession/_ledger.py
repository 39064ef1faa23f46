"""The runner's side of the usage ledger: one ``RunRecord`` per run, built in one place.

``RunLedger.watch`` is called as a run starts. It makes sure the run's SDK context is a
``RunContextWrapper`` this object holds (passing one as ``context=``, which the SDK then
uses as is), so the usage the SDK sums over every model call of the run
(``context_wrapper.usage``: tool turns and handoffs included) can be read when the run
ends, whether it completed, failed or was cancelled. The run's guard then hands the
record to the run's last ``add_messages`` (see ``_run_guard``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from agents import RunContextWrapper, RunState
from agents.models import get_default_model

from ._sdk import resumed_context
from .protocol import RunOutcome, RunRecord
from .stores.runs import COUNTS

__all__ = ("RunLedger", "outcome_of")


def _counts(usage: Any) -> tuple[int, ...]:
    """``stores.runs.COUNTS`` of an SDK ``Usage`` (0 where the model reported nothing)."""
    return (
        usage.requests,
        usage.input_tokens,
        usage.output_tokens,
        usage.total_tokens,
        getattr(usage.input_tokens_details, "cached_tokens", 0) or 0,
        getattr(usage.output_tokens_details, "reasoning_tokens", 0) or 0,
    )


def _model_name(agent: Any, run_config: Any) -> str:
    """The model name the run asks for: the run config's, else the agent's, else the
    SDK's default; a ``Model`` object by its ``model`` attribute (``""`` if it has none)."""
    model = getattr(run_config, "model", None)
    if model is None:
        model = getattr(agent, "model", None)
    if model is None:
        return get_default_model()
    if isinstance(model, str):
        return model
    name = getattr(model, "model", "")
    return name if isinstance(name, str) else ""


def outcome_of(exc_type: Any) -> RunOutcome:
    """How a run that left its guard with ``exc_type`` (``None``: none) ended."""
    if exc_type is None:
        return "completed"
    if isinstance(exc_type, type) and issubclass(
        exc_type, (asyncio.CancelledError, KeyboardInterrupt)
    ):
        return "cancelled"
    return "failed"


class RunLedger:
    """What one run spends, read from its SDK context when it ends.

    Not thread-safe: it belongs to one run.

    Args:
        agent: the run's starting agent (the record's ``agent`` until ``ended`` says
            which agent ended the run).
        run_config: the run's ``RunConfig`` (its ``model``, if set, is the run's model).
    """

    def __init__(self, agent: Any, run_config: Any) -> None:
        self.agent = str(getattr(agent, "name", "") or "")
        self.model = _model_name(agent, run_config)
        self.started_at = time.time()
        self._wrapper: Any = None
        self._before = (0,) * len(COUNTS)

    def watch(self, input: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return the SDK runner's keyword arguments, with a ``context`` this ledger reads.

        A resumed run (``input`` a ``RunState``) continues with the state's context, and a
        ``RunContextWrapper`` passed by the caller is used as is: only what they gain
        during this run is recorded.
        """
        context = kwargs.get("context")
        existing = resumed_context(input) if isinstance(input, RunState) else None
        if existing is None and isinstance(context, RunContextWrapper):
            existing = context
        if existing is not None:
            self._wrapper = existing
            self._before = _counts(existing.usage)
            return kwargs
        self._wrapper = RunContextWrapper(context=context)
        return {**kwargs, "context": self._wrapper}

    def ended(self, outcome: Any) -> None:
        """Note which agent ended the run, from how it ended: a result's ``last_agent``
        (after handoffs, the agent that produced the final output; for a streamed run,
        the one running when it stopped) or an SDK exception's ``run_data.last_agent``.
        Anything else (an error the SDK attached no run data to) leaves the agent as
        it was: the starting agent."""
        try:
            agent = getattr(outcome, "last_agent", None)
            if agent is None:
                agent = getattr(getattr(outcome, "run_data", None), "last_agent", None)
        except Exception:  # a result whose agent is gone (released): keep what we have
            return
        name = getattr(agent, "name", None)
        if isinstance(name, str) and name:
            self.agent = name

    def start(self) -> None:
        """Mark the moment the run took its session."""
        self.started_at = time.time()

    def record(
        self, session_id: str, run_id: str, items_added: int, outcome: RunOutcome
    ) -> RunRecord:
        """The run's record, with what its context's usage gained since ``watch``."""
        now = _counts(self._wrapper.usage) if self._wrapper is not None else (0,) * len(COUNTS)
        gained = (max(0, a - b) for a, b in zip(now, self._before, strict=True))
        spent = dict(zip(COUNTS, gained, strict=True))
        return RunRecord(
            run_id=run_id,
            session_id=session_id,
            started_at=datetime.fromtimestamp(self.started_at, timezone.utc),
            ended_at=datetime.now(timezone.utc),
            agent=self.agent,
            model=self.model,
            items_added=items_added,
            outcome=outcome,
            **spent,
        )
