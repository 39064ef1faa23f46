"""Automatic compaction before a run (``RunConfig(compaction=Compaction(...))``).

Called by the run's guard once it holds the session's lease, before the SDK reads the
session: if the history the model would be sent (the run's first read, through the
session's window) holds more than about ``max_tokens`` tokens, the session is compacted
under the run's own lease and the first read is made again, so the run starts from the
compacted history. A run without ``compaction`` never gets here: no extra store call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._compaction_memory import compact_holding
from .compaction import Compaction
from .window import approximate_tokens

if TYPE_CHECKING:
    from ._run_guard import RunGuard

__all__ = ("check_compaction", "compact_before_run")


def check_compaction(compaction: Any, memory: Any) -> None:
    """Check ``RunConfig(compaction=...)`` against the run's memory.

    Raises:
        TypeError: not a ``Compaction``, or a memory that cannot compact (compaction
            needs an agentsession memory: a ``StoreMemory`` over a store).
    """
    if compaction is None:
        return
    if not isinstance(compaction, Compaction):
        raise TypeError(f"compaction must be a Compaction or None, got {compaction!r:.80}")
    store = getattr(memory, "store", None)
    usable = callable(getattr(store, "compact_with", None)) and callable(
        getattr(memory, "_call", None)  # a StoreMemory's way to call its store
    )
    if memory is not None and not usable:
        raise TypeError(
            "compaction needs an agentsession memory (a StoreMemory over a store); "
            f"{type(memory).__name__} cannot compact"
        )


async def compact_before_run(guard: RunGuard, compaction: Compaction) -> None:
    """Compact the guard's session if the run would send more than the budget."""
    memory, session = guard.memory, guard.session
    held = session.prefetched()
    if held is not None:
        read, items = held
    else:
        read, items = None, await memory.get_messages(guard.session_id)
    window = session.window
    sent = window.select(items) if window is not None else items
    count = window.count_tokens if window is not None else approximate_tokens
    if sum(count(item) for item in sent) <= compaction.max_tokens:
        return
    record = await compact_holding(
        memory._call,
        memory.store,
        guard.session_id,
        guard.owner,
        model=compaction.model,
        keep_turns=compaction.keep_turns,
        instructions=compaction.instructions,
        tracing_disabled=guard.tracing_disabled,
    )
    if record is not None and read is not None:  # the run's first read, made again
        limit, tool_safe = read
        session.prefetch(
            read, await memory.get_messages(guard.session_id, limit, tool_safe=tool_safe)
        )
