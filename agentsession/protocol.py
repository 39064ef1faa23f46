"""Every contract agentsession is built on.

``SessionMemory`` is the async protocol the runner calls (the spec's three methods);
anything with those three coroutine methods works, no base class needed. ``Store`` is the
blocking interface every backend implements; ``StoreMemory`` adapts any ``Store`` to
``SessionMemory`` through worker threads. ``LeaseStore`` (blocking) and ``LeasingMemory``
(async) are the little more the runner uses when a store or memory offers it: a session
lease that holds across processes. A memory of your own with ``LeasingMemory``'s methods
gets the same guarantee as agentsession's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = (
    "LeaseStore",
    "LeasingMemory",
    "SearchHit",
    "SessionInfo",
    "SessionMemory",
    "SessionPage",
    "Store",
)


@runtime_checkable
class SessionMemory(Protocol):
    """Conversation history keyed by session id, awaited by the runner.

    Messages are plain JSON-ready dicts (Responses API input items), returned oldest first.
    """

    async def get_messages(self, session_id: str) -> list[dict[str, Any]]:
        """Return the session's messages, oldest first (``[]`` for an unknown session)."""
        ...

    async def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        """Append ``messages`` to the session, in order."""
        ...

    async def clear_session(self, session_id: str) -> None:
        """Delete every message of the session."""
        ...


@dataclass(frozen=True)
class SessionInfo:
    """What a store knows about one session.

    Attributes:
        session_id: the session's id.
        message_count: how many messages it holds now.
        created_at: when its first message was stored (UTC).
        updated_at: when it last changed (UTC).
        metadata: the user's own JSON object for the session (user id, title, tags);
            ``{}`` when none was set. Not part of the hash.
    """

    session_id: str
    message_count: int
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SessionPage:
    """One page of sessions, newest activity first (see ``list_sessions_page``).

    Attributes:
        sessions: this page's sessions.
        next_cursor: pass it back as ``cursor`` for the next page; ``None`` on the last.
    """

    sessions: list[SessionInfo]
    next_cursor: str | None


@dataclass(frozen=True)
class SearchHit:
    """One message found by full-text search.

    Attributes:
        session_id: the session holding the message.
        position: the message's 1-based position in its session (its ``seq``).
        message: the stored message.
        snippet: a short excerpt with the matched words between the highlight marks.
        rank: lower (more negative) is more relevant; comparable within one engine
            only. SQLite: FTS5's bm25 score. PostgreSQL: ``-ts_rank_cd(..., 1)`` (cover
            density divided by 1 + log of the message's length).
    """

    session_id: str
    position: int
    message: dict[str, Any] = field(hash=False)
    snippet: str
    rank: float


@runtime_checkable
class Store(Protocol):
    """A blocking, thread-safe session store: the one implementation of every feature.

    Implementations promise: every method may be called from any thread at once; each
    ``add_messages`` is atomic and keeps its order; a closed store raises ``StoreClosed``.
    """

    def get_messages(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the newest ``limit`` messages (all when ``None``), oldest first."""
        ...

    def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        """Append ``messages`` atomically, in order."""
        ...

    def pop_message(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return the newest message, or ``None`` if the session is empty."""
        ...

    def clear_session(self, session_id: str) -> None:
        """Delete the session and all its messages."""
        ...

    def list_sessions(self) -> list[SessionInfo]:
        """Return every session, most recently active first."""
        ...

    def close(self) -> None:
        """Release every connection; later calls raise ``StoreClosed``."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """A blocking store that can hold a session for one run, across processes.

    The runner takes the lease before a run reads the session and gives it back when the
    run's items are committed, so two runs on one session never interleave.

    Attributes:
        lease_blocks: whether ``try_lock`` / ``unlock`` wait on I/O (a network round
            trip, a disk write). ``False`` promises they only make system calls that
            never wait, so the async memory may call them on the event loop.
        lease_expires: whether a lease lapses ``lease`` seconds after it was taken
            unless renewed (by ``try_lock`` again as the same owner). ``False`` promises
            it is held until ``unlock`` or until the holding process dies, whichever
            comes first.
    """

    lease_blocks: bool
    lease_expires: bool

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take the session's lease for ``owner`` if no other owner holds it; never waits.

        Returns ``True`` when ``owner`` holds it now (taking it again renews it).

        Raises:
            TypeError, ValueError: a bad ``session_id``, ``owner`` or ``lease``.
            StoreError: the backend failed.
        """
        ...

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the lease back if ``owner`` holds it; otherwise do nothing.

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``owner``.
            StoreError: the backend failed.
        """
        ...


@runtime_checkable
class LeasingMemory(Protocol):
    """The async twin of ``LeaseStore``: a ``SessionMemory`` whose runs hold a lease.

    ``StoreMemory`` is one when its store is a ``LeaseStore``. Without these methods the
    runner's lease holds only within one process.
    """

    lease_expires: bool

    async def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """As ``LeaseStore.try_lock``."""
        ...

    async def unlock(self, session_id: str, owner: str) -> None:
        """As ``LeaseStore.unlock``."""
        ...
