"""MemorySession: one session of a memory, as the Agents SDK's ``Session`` protocol.

The runner hands this object to the SDK's own runner (``session=``), so the SDK's
persistence rules (what is saved when, guardrails, interruptions, streaming) apply
unchanged. It works with any ``SessionMemory``, including a user's class that has only
the spec's three async methods.
"""

from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING, Any

from agents.memory.session_settings import (
    SessionSettings,
    coerce_session_settings,
    resolve_session_limit,
)

from ._serialize import encode_messages
from ._validate import check_limit, check_session_id
from .memory import StoreMemory
from .window import HistoryWindow, tool_safe_tail

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

    from .protocol import SessionMemory

__all__ = ("MemorySession",)


def _takes_limit(memory: object) -> bool:
    if isinstance(memory, StoreMemory):
        return True
    try:
        parameters = inspect.signature(memory.get_messages).parameters  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return False
    return "limit" in parameters


class MemorySession:
    """A ``SessionMemory`` bound to one ``session_id``; satisfies ``agents.memory.Session``.

    Thread safety: as safe as the memory it wraps (``StoreMemory`` is safe everywhere).

    Args:
        memory: the memory to read and write.
        session_id: the conversation's id.
        session_settings: the SDK's settings; ``limit`` caps how many of the newest
            items ``get_items()`` returns (and so how much history a run sees).
        window: what history a run sees when no limit is given: newest items, turns
            or a token budget (``HistoryWindow``); the whole history when ``None``.

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
        self.memory = memory
        self.window = window
        self.session_id = check_session_id(session_id)
        # As the SDK's own sessions do: settings are always an object, limit None = all.
        self.session_settings: SessionSettings | None = (
            SessionSettings()
            if session_settings is None
            else coerce_session_settings(session_settings)
        )
        self._takes_limit = _takes_limit(memory)
        self._plain = not isinstance(memory, StoreMemory)

    def __repr__(self) -> str:
        return f"MemorySession({self.memory!r}, {self.session_id!r})"

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Return the newest ``limit`` items, oldest first.

        With no ``limit`` (and none in ``session_settings``), the session's
        ``HistoryWindow`` chooses, or the whole history is returned when there is none.
        Every window is tool-safe (see ``agentsession.window``); a ``limit`` of 0 or less
        returns ``[]``, as the SDK's sessions do.

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
        window = self.window
        if limit is None and window is not None and not window.needs_full_history:
            limit = window.max_items
            window = None
        if limit is not None and self._takes_limit:
            # Our stores return tool-safe windows themselves.
            return await self._fetch(limit)  # type: ignore[return-value]
        messages = await self._fetch(None)
        if limit is not None:
            return tool_safe_tail(messages, len(messages) - limit)  # type: ignore[return-value]
        if window is not None:
            return window.select(messages)  # type: ignore[return-value]
        return messages  # type: ignore[return-value]

    async def _fetch(self, limit: int | None) -> list[dict[str, Any]]:
        if limit is not None:
            messages: Any = await self.memory.get_messages(self.session_id, limit=limit)  # type: ignore[call-arg]
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
        """Append ``items`` in order, atomically where the memory is (``StoreMemory`` is).

        A memory of the user's own receives plain JSON-ready dicts, copies of the items.

        Raises:
            TypeError: an item is not JSON-ready; nothing is stored.
            StoreError: the backend failed.
        """
        if self._plain:
            encoded = encode_messages(items)
            messages = [json.loads(text) for text in encoded]
            await self.memory.add_messages(self.session_id, messages)
        else:
            await self.memory.add_messages(self.session_id, items)  # type: ignore[arg-type]

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item, or ``None`` if the session is empty.

        Raises:
            NotImplementedError: the memory has no ``pop_message(session_id)`` method
                (the spec's protocol does not require one).
            StoreError: the backend failed.
        """
        pop = getattr(self.memory, "pop_message", None)
        if pop is None:
            raise NotImplementedError(
                f"{type(self.memory).__name__} has no pop_message(session_id) method, "
                "so items cannot be popped from its sessions"
            )
        item: Any = await pop(self.session_id)
        return item  # type: ignore[no-any-return]

    async def clear_session(self) -> None:
        """Delete every item of this session.

        Raises:
            StoreError: the backend failed.
        """
        await self.memory.clear_session(self.session_id)
