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

    Raises:
        TypeError, ValueError: ``session_id`` is not a non-empty string.
    """

    def __init__(
        self,
        memory: SessionMemory,
        session_id: str,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        self.memory = memory
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
        """Return the newest ``limit`` items (default: ``session_settings.limit``, else all).

        A ``limit`` of 0 or less returns ``[]``, as the SDK's sessions do.

        Raises:
            TypeError: ``limit`` is not an int.
            StoreError: the backend failed.
        """
        limit = resolve_session_limit(limit, self.session_settings)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit <= 0:
            # The SDK's session contract (and its own test cases): no positive limit, no
            # items. The blocking store API refuses a negative limit instead.
            return []
        limit = check_limit(limit)
        if self._takes_limit:
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
        if not self._takes_limit and limit is not None:
            messages = messages[-limit:]
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
