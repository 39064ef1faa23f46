"""MemorySession: one session of a memory, as the Agents SDK's ``Session`` protocol.

The runner hands this object to the SDK's own runner (``session=``), so the SDK's
persistence rules (what is saved when, guardrails, interruptions, streaming) apply
unchanged. It works with any ``SessionMemory``, including a user's class that has only
the spec's three async methods.

Inside a run (between ``begin_run`` and ``end_run``, which the runner's guard calls) the
items the SDK saves are held here and written with one ``add_messages`` call when the
run ends: one transaction per run, readers see a turn whole or not at all, and a run
that fails, or a process killed mid-run, leaves nothing behind.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, cast

from ._sdk import SessionSettings, coerce_session_settings, resolve_session_limit
from ._serialize import EncodedMessages
from ._validate import check_limit, check_session_id
from .exceptions import StoreClosed
from .window import HistoryWindow

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

    from .protocol import RunRecord, SessionMemory

__all__ = ("MemorySession",)


#: ``_parameters`` of each memory class whose ``get_messages`` is a plain method.
_class_parameters: dict[type, frozenset[str]] = {}


def _parameters(memory: object) -> frozenset[str]:
    """The parameter names of ``memory.get_messages`` (empty if it cannot be inspected).

    Worked out once per class: ``inspect.signature`` costs more than the rest of binding
    a session, which happens on every run.
    """
    cls = type(memory)
    cacheable = "get_messages" not in getattr(memory, "__dict__", {})
    if cacheable and cls in _class_parameters:
        return _class_parameters[cls]
    try:
        names = frozenset(inspect.signature(memory.get_messages).parameters)  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        names = frozenset()
    if cacheable:
        _class_parameters[cls] = names
    return names


class MemorySession:
    """A ``SessionMemory`` bound to one ``session_id``; satisfies ``agents.memory.Session``.

    ``get_items(limit=N)`` (or ``session_settings.limit``) returns exactly the newest
    ``N`` stored items, as every SDK session does (the SDK's runner then drops a tool
    output whose call fell outside). With no limit, the session's ``HistoryWindow``
    chooses a tool-safe window, or the whole history is returned.

    Thread safety: one bound session belongs to one run at a time (the runner makes a
    new one per run); the memory under it may be shared by everyone.

    Args:
        memory: the memory to read and write.
        session_id: the conversation's id.
        session_settings: the SDK's settings; ``limit`` caps how many of the newest
            items ``get_items()`` returns (and so how much history a run sees).
        window: what history a run sees when no limit is given; defaults to the
            memory's own ``window`` attribute, if it has one (``StoreMemory`` does).

    Raises:
        TypeError, ValueError: ``session_id`` is not a non-empty string, or ``window`` is
            not a ``HistoryWindow``.
    """

    def __init__(
        self,
        memory: SessionMemory,
        session_id: str,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        *,
        window: HistoryWindow | None = None,
    ) -> None:
        if window is not None and not isinstance(window, HistoryWindow):
            raise TypeError(f"window must be a HistoryWindow or None, got {window!r}")
        if window is None:
            default = getattr(memory, "window", None)
            window = default if isinstance(default, HistoryWindow) else None
        self.memory = memory
        self.window = window
        self.session_id = check_session_id(session_id)
        # As the SDK's own sessions do: settings are always an object, limit None = all.
        self.session_settings: SessionSettings | None = (
            SessionSettings()
            if session_settings is None
            else coerce_session_settings(session_settings)
        )
        parameters = _parameters(memory)
        self._takes_limit = "limit" in parameters
        # agentsession's memories choose between tool-safe windows and exact tails.
        self._takes_tool_safe = "tool_safe" in parameters
        self._pending: EncodedMessages | None = None
        #: A read made for this run ahead of the SDK's first ``get_items`` (``prefetch``):
        #: ``((limit, tool_safe), messages)``, used once.
        self._prefetched: tuple[tuple[int | None, bool], list[dict[str, Any]]] | None = None

    def __repr__(self) -> str:
        return f"MemorySession({self.memory!r}, {self.session_id!r})"

    # -- the run's buffer ----------------------------------------------------------------

    def begin_run(self) -> None:
        """Hold what is added from now on until ``end_run`` (the runner's guard calls it)."""
        self._pending = EncodedMessages()

    @property
    def pending(self) -> int:
        """How many items the current run has added and not yet written."""
        return len(self._pending or ())

    def take_run(self, *, commit: bool) -> list[dict[str, Any]]:
        """Stop holding; return the held items to write (none if not ``commit``), with
        their JSON texts, so the store does not encode them again."""
        pending, self._pending = self._pending, None
        self._prefetched = None
        return pending if commit and pending else []

    async def end_run(self, *, commit: bool, run: RunRecord | None = None) -> None:
        """Stop holding: write the held items in one ``add_messages`` call, or drop them.

        With ``run`` (the memory is a ``LedgerMemory``), the run's record goes with that
        call (``add_messages(..., run=run)``), alone when nothing is written.

        Raises:
            TypeError: a held item cannot be stored; nothing is.
            StoreError: the backend failed; nothing of the run is stored.
        """
        pending = self.take_run(commit=commit)
        if run is not None:
            await self.memory.add_messages(self.session_id, pending, run=run)  # type: ignore[call-arg]
        elif pending:
            await self.memory.add_messages(self.session_id, pending)

    def first_read(self, run_settings: Any = None) -> tuple[int | None, bool] | None:
        """The read the SDK's runner makes first in a run, as ``(limit, tool_safe)`` of
        ``get_messages``, so the runner can make it together with taking the lease
        (``prefetch``); ``None`` when that read reads nothing.

        Args:
            run_settings: the run's ``RunConfig.session_settings``, which the SDK lays
                over this session's own to choose the ``limit`` of its read.
        """
        settings = self.session_settings or SessionSettings()
        limit = settings.resolve(run_settings).limit
        if isinstance(limit, int) and not isinstance(limit, bool) and limit <= 0:
            return None
        if limit is not None:
            return check_limit(limit), False
        window = self.window
        if window is not None and not window.needs_full_history and self._takes_tool_safe:
            return window.max_items, True
        return None, True

    def prefetch(
        self, read: tuple[int | None, bool], messages: list[dict[str, Any]] | None
    ) -> bool:
        """Hand over the result of ``read`` (from ``first_read``), made while taking the
        run's lease (``lock_and_read``): the run's first matching read returns it instead
        of reading again. Returns whether the lease was taken (``messages`` not ``None``).
        """
        if messages is None:
            return False
        self._prefetched = (read, messages)
        return True

    def prefetched(self) -> tuple[tuple[int | None, bool], list[dict[str, Any]]] | None:
        """The read handed over by ``prefetch`` and not used yet, as ``(read, messages)``."""
        return self._prefetched

    # -- the SDK's Session protocol --------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Return the session's items, oldest first: the newest ``limit`` of them exactly.

        With no ``limit`` (and none in ``session_settings``), the session's
        ``HistoryWindow`` chooses (tool-safe), or the whole history is returned when
        there is none. A ``limit`` of 0 or less returns ``[]``, as the SDK's sessions do.
        Inside a run, what the run has added so far is included.

        Raises:
            TypeError: ``limit`` is not an int, or the memory returned something other
                than a list.
            StoreError: the backend failed.
        """
        limit = resolve_session_limit(limit, self.session_settings)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit <= 0:
            # The SDK's session contract (and its own test cases): no positive limit, no
            # items. The blocking store API refuses a negative limit instead.
            return []
        limit = check_limit(limit)
        pending = list(self._pending or ())
        if limit is not None:
            if len(pending) >= limit:
                return cast("list[TResponseInputItem]", pending[len(pending) - limit :])
            return cast(
                "list[TResponseInputItem]",
                await self._newest(limit - len(pending)) + pending,
            )
        window = self.window
        items: list[dict[str, Any]]
        if window is None:
            items = await self._fetch(None) + pending
        elif not window.needs_full_history and not pending and self._takes_tool_safe:
            # Our stores cut a tool-safe window of the newest items themselves.
            items = await self._fetch(window.max_items, tool_safe=True)
        else:
            items = window.select(await self._fetch(None) + pending)
        return cast("list[TResponseInputItem]", items)

    async def _newest(self, count: int) -> list[dict[str, Any]]:
        """Exactly the newest ``count`` stored items (1 or more), oldest first."""
        if self._takes_tool_safe:
            return await self._fetch(count, tool_safe=False)
        if self._takes_limit:
            return await self._fetch(count)
        messages = await self._fetch(None)
        return messages[max(0, len(messages) - count) :]

    async def _fetch(self, limit: int | None, **options: Any) -> list[dict[str, Any]]:
        if self._prefetched is not None:
            read, prefetched = self._prefetched
            self._prefetched = None
            tool_safe = options.get("tool_safe", True) if limit is not None else True
            if read == (limit, tool_safe):
                return prefetched
        if limit is not None:
            messages: Any = await self.memory.get_messages(  # type: ignore[call-arg]
                self.session_id, limit=limit, **options
            )
        else:
            messages = await self.memory.get_messages(self.session_id)
        if messages is None:
            # A stub memory (the spec's example bodies are ``pass``) remembers nothing.
            return []
        if not isinstance(messages, list):
            raise TypeError(
                f"{type(self.memory).__name__}.get_messages() must return a list of dicts, "
                f"not {type(messages).__name__}"
            )
        return list(messages)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in order; inside a run, when the run ends (see the module).

        The memory receives plain JSON-ready dicts, copies of the items, so changing an
        item afterwards does not change what is stored.

        Raises:
            TypeError: an item is not JSON-ready; nothing of this call is stored.
            StoreClosed: the memory is closed (an empty ``items`` too, as the SDK's
                ``SQLiteSession`` does after ``close()``).
            StoreError: the backend failed.
        """
        if self._pending is not None:
            self._pending.add(items)
            return
        # Copies with their JSON texts, as a run's held items: a store writes the texts
        # instead of checking and encoding the copies again.
        copies = EncodedMessages()
        if copies.add(items):
            await self.memory.add_messages(self.session_id, copies)
        elif getattr(self.memory, "closed", False) is True:  # as the SDK's SQLiteSession
            raise StoreClosed(f"{self.memory!r} is closed")

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item, or ``None`` if the session is empty.

        Raises:
            NotImplementedError: the memory has no ``pop_message(session_id)`` method
                (the spec's protocol does not require one).
            StoreError: the backend failed.
        """
        if self._pending:
            return cast("TResponseInputItem", self._pending.pop())
        pop = getattr(self.memory, "pop_message", None)
        if pop is None:
            raise NotImplementedError(
                f"{type(self.memory).__name__} has no pop_message(session_id) method, "
                "so items cannot be popped from its sessions"
            )
        item: Any = await pop(self.session_id)
        return item  # type: ignore[no-any-return]

    async def clear_session(self) -> None:
        """Delete every item of this session (and what the current run has added).

        Raises:
            StoreError: the backend failed.
        """
        if self._pending is not None:
            self._pending.clear()
        await self.memory.clear_session(self.session_id)
