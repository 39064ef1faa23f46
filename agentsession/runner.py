"""Runner and RunConfig: the SDK's runner, with session memory switched on by configuration.

``RunConfig(memory=..., session_id=...)`` is all a user adds. Before a run, the runner
binds the memory to the session id (``memory.session(id)``, or a ``MemorySession`` for a
memory of the user's own) and hands that to the SDK's runner as ``session=``; the SDK then
prepends the history and stores what the run adds by its own rules, for plain, streamed
and resumed runs alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import agents
from agents.models.interface import ModelProvider

from ._auto_compaction import check_compaction
from ._ledger import RunLedger
from ._loop_thread import run_blocking
from ._provider import LoopLocalProvider
from ._run_guard import FailedRuns, RunGuard, SessionLock
from ._streamed import GuardedSession, guard_stream
from ._validate import check_session_id
from .compaction import Compaction
from .protocol import LedgerMemory
from .session import MemorySession
from .window import HistoryWindow

if TYPE_CHECKING:
    from agents import Agent, RunResult, RunResultStreaming
    from agents.memory import Session

    from .protocol import SessionMemory

__all__ = ("RunConfig", "Runner")

SESSION_ID_REQUIRED = "session_id is required when memory is enabled"

_MEMORY_METHODS = ("get_messages", "add_messages", "clear_session")

#: Shared by every RunConfig that does not choose a provider, so connection pools are
#: reused across runs (one pool per event loop).
DEFAULT_PROVIDER = LoopLocalProvider()


def _default_provider() -> ModelProvider:
    return DEFAULT_PROVIDER


@dataclass
class RunConfig(agents.RunConfig):
    """The SDK's ``RunConfig`` plus session memory.

    Attributes:
        memory: where conversation history is kept; any object with the async
            ``get_messages``, ``add_messages`` and ``clear_session`` methods. ``None``
            (the default) runs without memory, exactly like the SDK.
        session_id: which conversation this run belongs to; required when ``memory``
            is set.
        history_window: what part of the history the model is sent (newest items,
            turns, a token budget); overrides the memory's own window. Windows are
            tool-safe and delete nothing.
        failed_runs: ``"rollback"`` (default): a run's items are written in one go when
            it ends, and not at all when it fails (model error, guardrail tripwire, max
            turns exceeded, cancellation, Ctrl-C), so the session is as it was before
            the run. ``"keep"`` writes what the run had added, as the SDK does.
        session_lock: two runs on one session never interleave: ``"wait"`` (default)
            waits for the other run (up to ``lock_timeout``), ``"fail"`` raises
            ``SessionBusy`` at once, ``"off"`` does not lock. Held across processes for
            agentsession's memories and any ``LeasingMemory``, within the process for
            another memory of your own.
        lock_timeout: seconds to wait for a session held by another run before
            ``SessionBusy``.
        max_session_tokens: a token budget for the session: a run on a session whose
            usage ledger records ``total_tokens`` of this or more raises
            ``SessionBudgetExceeded`` before any model call. ``None`` (the default): no
            budget. Needs a memory that keeps a ledger (``LedgerMemory``, as every
            agentsession memory does).
        compaction: compact the session before a run when the history the model would
            be sent holds more than ``Compaction.max_tokens`` tokens (see
            ``docs/compaction.md``), under the run's lease. ``None`` (the default): never.
            Needs an agentsession memory and the session lock.

    Raises:
        TypeError: ``memory`` lacks one of the three methods, or ``session_id`` is not a
            string.
        ValueError: ``session_id`` is an empty string, or ``failed_runs``,
            ``session_lock``, ``lock_timeout`` or ``max_session_tokens`` is not one of
            its allowed values.
        TypeError: ``max_session_tokens`` is set and ``memory`` keeps no usage ledger;
            or ``compaction`` is not a ``Compaction``, or set with a memory that cannot
            compact.
        ValueError: ``compaction`` with ``session_lock="off"``.
    """

    model_provider: ModelProvider = field(default_factory=_default_provider)
    memory: SessionMemory | None = None
    session_id: str | None = None
    history_window: HistoryWindow | None = None
    failed_runs: FailedRuns = "rollback"
    session_lock: SessionLock = "wait"
    lock_timeout: float = 300.0
    max_session_tokens: int | None = None
    compaction: Compaction | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memory is not None:
            missing = [
                name for name in _MEMORY_METHODS if not callable(getattr(self.memory, name, None))
            ]
            if missing:
                raise TypeError(
                    f"memory must implement SessionMemory ({', '.join(_MEMORY_METHODS)}); "
                    f"{type(self.memory).__name__} lacks {', '.join(missing)}"
                )
        if self.session_id is not None:
            check_session_id(self.session_id)
        if self.failed_runs not in ("rollback", "keep"):
            raise ValueError(f'failed_runs must be "rollback" or "keep", got {self.failed_runs!r}')
        if self.session_lock not in ("wait", "fail", "off"):
            raise ValueError(
                f'session_lock must be "wait", "fail" or "off", got {self.session_lock!r}'
            )
        if (
            isinstance(self.lock_timeout, bool)
            or not isinstance(self.lock_timeout, (int, float))
            or not self.lock_timeout >= 0
        ):
            raise ValueError(f"lock_timeout must be 0 or more seconds, got {self.lock_timeout!r}")
        if self.max_session_tokens is not None:
            budget = self.max_session_tokens
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
                raise ValueError(
                    f"max_session_tokens must be an int of 1 or more, or None, got {budget!r}"
                )
            if self.memory is not None and not _keeps_ledger(self.memory):
                raise TypeError(
                    f"max_session_tokens needs a memory that keeps a usage ledger "
                    f"(LedgerMemory: usage, runs, add_messages(run=...)); "
                    f"{type(self.memory).__name__} does not"
                )
        if self.compaction is not None:
            check_compaction(self.compaction, self.memory)
            if self.session_lock == "off":
                raise ValueError(
                    'compaction needs the session lease: it cannot run with session_lock="off"'
                )
        if self.history_window is not None and not isinstance(self.history_window, HistoryWindow):
            raise TypeError(
                f"history_window must be a HistoryWindow or None, got {self.history_window!r}"
            )


#: Whether each memory class keeps a usage ledger (worked out once per class).
_ledger_classes: dict[type, bool] = {}


def _keeps_ledger(memory: object) -> bool:
    cls = type(memory)
    keeps = _ledger_classes.get(cls)
    if keeps is None:
        keeps = _ledger_classes[cls] = isinstance(memory, LedgerMemory)
    return keeps


def _watch(
    guard: RunGuard, agent: Any, input: Any, run_config: Any, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Give the run a ledger when its memory keeps one; return the SDK runner's kwargs."""
    if not _keeps_ledger(guard.memory):
        return kwargs
    guard.ledger = RunLedger(agent, run_config)
    return guard.ledger.watch(input, kwargs)


def _ended(guard: RunGuard, result: RunResult) -> RunResult:
    """Tell the run's ledger (if any) which agent ended it; return ``result``."""
    if guard.ledger is not None:
        guard.ledger.ended(result)
    return result


def bind_session(
    memory: Any, session_id: str, window: HistoryWindow | None = None
) -> MemorySession:
    """Return ``memory`` bound to ``session_id`` as an SDK ``Session``."""
    return MemorySession(memory, session_id, window=window)


def _prepare(
    run_config: RunConfig | agents.RunConfig | dict[str, Any] | None,
    session: Session | None,
) -> tuple[agents.RunConfig, Session | None, RunGuard | None]:
    """Validate the memory settings; return what the SDK's runner is given, and the
    run's guard (``None`` when the run has no memory).

    Raises:
        ValueError: memory without a session id, or memory and ``session=`` together.
    """
    if run_config is None:
        return RunConfig(), session, None
    if isinstance(run_config, dict):
        run_config = RunConfig(**run_config)
    if not isinstance(run_config, RunConfig) or run_config.memory is None:
        return run_config, session, None
    memory = run_config.memory
    session_id = run_config.session_id
    if session_id is None:
        raise ValueError(SESSION_ID_REQUIRED)
    if session is not None:
        raise ValueError(
            "pass either session= or RunConfig(memory=..., session_id=...), not both "
            f"(got session={session!r} and memory={memory!r})"
        )
    bound = bind_session(memory, session_id, run_config.history_window)
    guard = RunGuard(
        memory,
        bound,
        failed_runs=run_config.failed_runs,
        session_lock=run_config.session_lock,
        lock_timeout=run_config.lock_timeout,
        budget=run_config.max_session_tokens,
        session_settings=run_config.session_settings,
        compaction=run_config.compaction,
        tracing_disabled=run_config.tracing_disabled,
    )
    return run_config, bound, guard


async def _run(
    starting_agent: Agent[Any],
    input: Any,
    run_config: agents.RunConfig,
    session: Session | None,
    guard: RunGuard | None,
    kwargs: dict[str, Any],
) -> RunResult:
    """The SDK's run, inside the run's guard when it has memory."""
    if guard is None:
        return await agents.Runner.run(
            starting_agent, input, run_config=run_config, session=session, **kwargs
        )
    kwargs = _watch(guard, starting_agent, input, run_config, kwargs)
    async with guard:
        return _ended(
            guard,
            await agents.Runner.run(
                starting_agent, input, run_config=run_config, session=session, **kwargs
            ),
        )


async def _run_held(
    starting_agent: Agent[Any],
    input: Any,
    run_config: agents.RunConfig,
    session: Session | None,
    guard: RunGuard,
    kwargs: dict[str, Any],
) -> RunResult:
    """The SDK's run on a session its guard already holds (``RunGuard.enter_sync``)."""
    guard.start_renewal()
    try:
        return _ended(
            guard,
            await agents.Runner.run(
                starting_agent, input, run_config=run_config, session=session, **kwargs
            ),
        )
    finally:
        await guard.stop_renewal()


def _run_sync_held(
    starting_agent: Agent[Any],
    input: Any,
    run_config: agents.RunConfig,
    session: Session | None,
    guard: RunGuard,
    kwargs: dict[str, Any],
) -> RunResult:
    """A synchronous run whose store work is done in the calling thread: it blocks
    anyway, so taking the session, the first read and the final write cost no hop to a
    worker thread (``RunGuard.runs_in_caller``)."""
    kwargs = _watch(guard, starting_agent, input, run_config, kwargs)
    guard.enter_sync()
    try:
        result = run_blocking(_run_held(starting_agent, input, run_config, session, guard, kwargs))
    except BaseException as exc:
        guard.exit_sync(failed=True, error=exc)
        raise
    guard.exit_sync(failed=False)
    return result


class Runner:
    """The Agents SDK's ``Runner`` with session memory from ``RunConfig``.

    Every keyword the SDK's ``Runner`` takes is accepted and passed on. Thread safety:
    any number of runs may go on at once, from threads and event loops alike.
    """

    @classmethod
    async def run(
        cls,
        starting_agent: Agent[Any],
        input: Any,
        *,
        run_config: RunConfig | agents.RunConfig | dict[str, Any] | None = None,
        session: Session | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Run ``starting_agent`` on ``input`` and return the result.

        With ``run_config.memory`` set, the session's history is given to the model before
        the run and everything the run adds is stored after it; the run holds the session
        (``session_lock``) and a failed run is rolled back (``failed_runs``).

        Raises:
            ValueError: ``"session_id is required when memory is enabled"``, before
                anything is sent to a model.
            SessionBusy: another run held the session past ``lock_timeout``, or
                ``session_lock="fail"`` and it was held.
            Whatever the SDK's ``Runner.run`` raises.
        """
        return await _run(starting_agent, input, *_prepare(run_config, session), kwargs)

    @classmethod
    def run_sync(
        cls,
        starting_agent: Agent[Any],
        input: Any,
        *,
        run_config: RunConfig | agents.RunConfig | dict[str, Any] | None = None,
        session: Session | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Run synchronously: the same as ``run``, blocking until the result is ready.

        Unlike the SDK's ``run_sync`` this works from any thread at once and inside a
        running event loop (a Jupyter cell): every call runs on one background event
        loop of the process. Ctrl-C cancels the run and re-raises ``KeyboardInterrupt``
        once the run has wound down.

        Raises:
            ValueError: ``"session_id is required when memory is enabled"``, before
                anything is sent to a model.
            Whatever the SDK's ``Runner.run`` raises.
        """
        # Caller mistakes raise here, in the calling thread, before any work.
        prepared = _prepare(run_config, session)
        guard = prepared[2]
        if guard is not None and guard.runs_in_caller:
            return _run_sync_held(starting_agent, input, *prepared[:2], guard, kwargs)
        return run_blocking(_run(starting_agent, input, *prepared, kwargs))

    @classmethod
    def run_streamed(
        cls,
        starting_agent: Agent[Any],
        input: Any,
        *,
        run_config: RunConfig | agents.RunConfig | dict[str, Any] | None = None,
        session: Session | None = None,
        **kwargs: Any,
    ) -> RunResultStreaming:
        """Start a streamed run; iterate ``result.stream_events()`` for its events.

        Must be called with an event loop running, as with the SDK. What the run adds is
        stored as the SDK stores streamed turns. The run holds the session from its first
        read of it (``session_lock``); a stream that raises is rolled back
        (``failed_runs``) once ``stream_events()`` ends.

        Raises:
            ValueError: ``"session_id is required when memory is enabled"``, before
                anything is sent to a model.
            Whatever the SDK's ``Runner.run_streamed`` raises.
        """
        run_config, session, guard = _prepare(run_config, session)
        if guard is None:
            return agents.Runner.run_streamed(
                starting_agent, input, run_config=run_config, session=session, **kwargs
            )
        kwargs = _watch(guard, starting_agent, input, run_config, kwargs)
        result = agents.Runner.run_streamed(
            starting_agent,
            input,
            run_config=run_config,
            session=GuardedSession(session, guard),  # type: ignore[arg-type]
            **kwargs,
        )
        guard_stream(result, guard)
        return result
