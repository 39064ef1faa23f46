"""Every contract agentsession is built on.

``SessionMemory`` is the async protocol the runner calls (the spec's three methods);
anything with those three coroutine methods works, no base class needed. ``Store`` is the
blocking interface every backend implements; ``StoreMemory`` adapts any ``Store`` to
``SessionMemory`` through worker threads. ``LeaseStore`` (blocking) and ``LeasingMemory``
(async) are the little more the runner uses when a store or memory offers it: a session
lease that holds across processes. A memory of your own with ``LeasingMemory``'s methods
gets the same guarantee as agentsession's own. ``LedgerMemory`` is what the runner uses
to keep the usage ledger (``RunRecord``, ``SessionUsage``) and enforce budgets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, Literal, Protocol, runtime_checkable

__all__ = (
    "CompactionRecord",
    "LeaseHolder",
    "LeaseStore",
    "LeasingMemory",
    "LedgerMemory",
    "RunMemory",
    "RunOutcome",
    "RunRecord",
    "RunStore",
    "SearchHit",
    "SessionInfo",
    "SessionMemory",
    "SessionPage",
    "SessionUsage",
    "Store",
)

#: How a run ended: ``"completed"``, ``"failed"`` (an exception; rolled back or kept as
#: ``RunConfig.failed_runs`` says) or ``"cancelled"`` (its task was cancelled, Ctrl-C).
RunOutcome = Literal["completed", "failed", "cancelled"]


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


@dataclass(frozen=True)
class RunRecord:
    """What one run through the runner spent: one entry of a session's usage ledger.

    The runner writes it with the run's items, in the same atomic step (see
    ``Store.add_messages``); a run rolled back writes it alone. Token figures are the SDK's
    ``result.context_wrapper.usage``: summed over every model call of the run (tool turns
    and handoffs included), 0 where the model reported nothing.

    Attributes:
        run_id: unique per run (its lease owner name).
        session_id: the session the run belonged to.
        started_at, ended_at: when the run took the session and when it let it go (UTC).
        agent: the name of the agent that ended the run: after handoffs, the one that
            produced the final output; for a failed run, the one running when it failed
            where the SDK tells, else the starting agent.
        model: the model name the run asked for (``RunConfig.model``, else the starting
            agent's; ``""`` if it could not be told).
        requests: how many model calls the run made.
        input_tokens, output_tokens, total_tokens: tokens sent, received, and both.
        cached_input_tokens: of ``input_tokens``, those served from the provider's cache.
        reasoning_tokens: of ``output_tokens``, those spent reasoning.
        items_added: how many items the run stored (0 when it was rolled back).
        outcome: ``"completed"``, ``"failed"`` or ``"cancelled"``.
    """

    run_id: str
    session_id: str
    started_at: datetime
    ended_at: datetime
    agent: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    items_added: int
    outcome: RunOutcome


@dataclass(frozen=True)
class CompactionRecord:
    """One compaction of a session: its oldest turns summarised, the originals archived.

    See ``docs/compaction.md``. ``Store.compactions`` lists a session's records, oldest
    first; ``Store.uncompact`` undoes the newest one and returns its record.

    Attributes:
        session_id: the compacted session.
        compacted_items: how many stored items were archived (and summarised).
        kept_items: how many items followed them, kept as they were.
        summary: the summary's text (without ``compaction.SUMMARY_PREFIX``).
        tokens_before, tokens_after: about how many tokens the session's visible history
            held before and after (``window.approximate_tokens``, as ``HistoryWindow``
            counts them).
        created_at: when the compaction was stored (UTC).
        model: the name of the model that wrote the summary (``""`` if not told).
    """

    session_id: str
    compacted_items: int
    kept_items: int
    summary: str
    tokens_before: int
    tokens_after: int
    created_at: datetime
    model: str


@dataclass(frozen=True)
class SessionUsage:
    """The sum of a session's run records (see ``Store.usage``).

    Attributes:
        runs: how many runs are recorded (0 for a session with none).
        requests, input_tokens, output_tokens, total_tokens, cached_input_tokens,
            reasoning_tokens: the sums of those fields of every ``RunRecord``.
        first_run_at, last_run_at: when the first recorded run started and the last one
            ended (UTC); ``None`` when no run is recorded.
    """

    runs: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    first_run_at: datetime | None = None
    last_run_at: datetime | None = None


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a session's run lease, as far as the backend can tell (see
    ``Store.lease_holder``).

    Attributes:
        pid: the holding process's id on its host, or ``None`` when unknown.
        host: the holding process's host name, or ``None`` when unknown.
    """

    pid: int | None = None
    host: str | None = None

    def __str__(self) -> str:
        """``"pid N on host H"``, or as much of it as is known (``""`` when nothing is)."""
        pid = "" if self.pid is None else f"pid {self.pid}"
        host = "" if self.host is None else f"host {self.host}"
        return " on ".join(part for part in (pid, host) if part)


@runtime_checkable
class Store(Protocol):
    """A blocking, thread-safe session store: the one implementation of every feature.

    Implementations promise: every method may be called from any thread at once; each
    ``add_messages`` is atomic and keeps its order; a caller mistake raises the same
    ``TypeError`` / ``ValueError`` on every engine, before anything is stored; a backend
    failure raises a ``StoreError``; a closed store raises ``StoreClosed``.
    agentsession's stores get all of this from ``stores.base.StoreBase``, whose
    docstrings are the full contract of each method.

    Attributes:
        lease_blocks: as ``LeaseStore.lease_blocks``.
        lease_expires: as ``LeaseStore.lease_expires``.
        reads_block: whether ``get_messages`` may wait on anything but the machine's
            own CPU and page cache (a network round trip, a lock held by a writer).
            ``False`` lets the async memory read on the event loop instead of paying
            for a thread hop (SQLite in WAL mode: readers never wait for writers).
    """

    lease_blocks: bool
    lease_expires: bool
    reads_block: bool

    def get_messages(
        self,
        session_id: str,
        limit: int | None = None,
        *,
        tool_safe: bool = True,
        include_archived: bool = False,
    ) -> list[dict[str, Any]]:
        """Return the newest ``limit`` messages (all when ``None``), oldest first; a tool-safe
        window unless ``tool_safe=False``, which returns exactly the newest ``limit``; with
        ``include_archived``, of the history with every compaction undone."""
        ...

    def compaction_candidates(self, session_id: str, keep_turns: int = 2) -> list[dict[str, Any]]:
        """The oldest messages a compaction keeping ``keep_turns`` turns would archive."""
        ...

    def compact_with(
        self,
        session_id: str,
        summary: str,
        *,
        items: int,
        model: str = "",
        lease_owner: str | None = None,
    ) -> CompactionRecord:
        """Archive the oldest ``items`` messages, a summary item in their place; atomic."""
        ...

    def uncompact(self, session_id: str) -> CompactionRecord | None:
        """Undo the newest compaction exactly; ``None`` if there is none."""
        ...

    def compactions(self, session_id: str) -> list[CompactionRecord]:
        """The session's compactions in force, oldest first."""
        ...

    def add_messages(
        self,
        session_id: str,
        messages: Iterable[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """Append ``messages`` (any iterable of JSON objects) atomically, in order; with
        ``run``, record that run in the same atomic step (``messages`` may then be empty)."""
        ...

    def usage(self, session_id: str) -> SessionUsage:
        """The sums of the session's run records (all zero for a session with none)."""
        ...

    def runs(self, session_id: str, limit: int = 20) -> list[RunRecord]:
        """The session's newest ``limit`` run records, newest first."""
        ...

    def usage_by_session(self, *, limit: int | None = None) -> list[tuple[str, SessionUsage]]:
        """``(session_id, usage)`` of every session with recorded runs, most total tokens
        first (the top ``limit`` of them; all when ``None``)."""
        ...

    def pop_message(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return the newest message, or ``None`` if the session is empty."""
        ...

    def rewind(self, session_id: str, turns: int = 1) -> list[dict[str, Any]]:
        """Remove the last ``turns`` turns whole (atomically); return what was removed."""
        ...

    def truncate(self, session_id: str, keep: int) -> list[dict[str, Any]]:
        """Keep the oldest ``keep`` messages; remove and return the rest (atomically)."""
        ...

    def message_count(self, session_id: str) -> int:
        """How many messages the session holds (0 for an unknown session)."""
        ...

    def clear_session(self, session_id: str) -> None:
        """Delete the session and all its messages."""
        ...

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take or renew the session's run lease for ``owner``; never waits."""
        ...

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the session's run lease back if ``owner`` holds it."""
        ...

    def lease_holder(self, session_id: str) -> LeaseHolder | None:
        """Who holds the session's run lease now (``None``: nobody); asked by a caller
        about to wait for it, so it may cost more than taking a lease."""
        ...

    def lock_and_read(
        self,
        session_id: str,
        owner: str,
        lease: float,
        limit: int | None = None,
        *,
        tool_safe: bool = True,
    ) -> list[dict[str, Any]] | None:
        """``try_lock``, then (if taken) ``get_messages``; ``None`` if another owner holds
        the lease (see ``RunStore``)."""
        ...

    def write_and_unlock(
        self,
        session_id: str,
        owner: str,
        messages: Iterable[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """``add_messages`` (with ``run``, if given), then ``unlock`` whatever happened
        (see ``RunStore``)."""
        ...

    def list_sessions(self, *, metadata: Mapping[str, Any] | None = None) -> list[SessionInfo]:
        """Return every session (or those whose metadata holds ``metadata``), most recently
        active first."""
        ...

    def list_sessions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionPage:
        """Return one page of sessions, newest activity first, and the next page's cursor."""
        ...

    def session_info(self, session_id: str) -> SessionInfo | None:
        """Return the session's record, or ``None`` if it has none."""
        ...

    def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace the session's metadata (creating its record if need be)."""
        ...

    def update_metadata(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        remove: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Merge ``changes`` into the metadata and delete ``remove``, atomically; return it."""
        ...

    def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        limit: int = 20,
        raw: bool = False,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]:
        """Find messages by their words, best match first (``NotSupportedError`` if the
        engine has no full-text search)."""
        ...

    def fork(self, session_id: str, new_session_id: str, *, at: int | None = None) -> int:
        """Copy messages 1..``at`` and the metadata into a new session; return how many."""
        ...

    def prune(
        self,
        *,
        older_than: datetime | timedelta | None = None,
        keep_last: int | None = None,
        batch: int = 500,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete idle sessions and/or trim long ones, in batches; return how many messages."""
        ...

    def expire_idle(self, ttl: timedelta, batch: int = 500) -> int:
        """Delete every session idle for longer than ``ttl``; return how many sessions."""
        ...

    def vacuum(self) -> None:
        """Give the space freed by deletions back, as the engine can."""
        ...

    def export_jsonl(
        self,
        fp: IO[str] | str | os.PathLike[str],
        *,
        session_ids: Iterable[str] | None = None,
        progress: Callable[[int], None] | None = None,
        decrypt: bool = False,
    ) -> int:
        """Write sessions as JSON Lines to an open text file or a path; return how many
        (an encrypted store writes ciphertext unless ``decrypt``)."""
        ...

    def import_jsonl(
        self,
        lines: Iterable[str] | str | os.PathLike[str],
        *,
        on_conflict: Literal["error", "skip", "replace"] = "error",
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Store sessions read from JSON Lines (lines, or a path), each whole or not at all;
        return how many."""
        ...

    @property
    def key_store(self) -> KeyStore | None:
        """Where an encrypted store keeps its wrapped data keys (``None``: not encrypted)."""
        ...

    def rotate_keys(
        self, *, batch: int = 500, progress: Callable[[int], None] | None = None
    ) -> int:
        """Re-wrap every session's data key under the primary master key (an encrypted
        store; ``NotSupportedError`` otherwise); return how many were re-wrapped."""
        ...

    def shred(self, session_id: str) -> None:
        """Destroy the session's data key, then delete the session (an encrypted store;
        ``NotSupportedError`` otherwise)."""
        ...

    def close(self) -> None:
        """Release every connection; later calls raise ``StoreClosed``."""
        ...


@runtime_checkable
class KeyStore(Protocol):
    """Where an encrypted store keeps its sessions' wrapped data keys, apart from them.

    A record is the text ``Encryption`` makes (a data key wrapped by a master key); a
    key store only keeps them, by session id. ``SQLiteKeyFile``, ``PostgresKeyTable``
    and ``RedisKeyHash`` are the ones agentsession has; any engine's store can use any.

    Implementations promise: every method may be called from any thread at once;
    ``add`` and ``replace`` are atomic against other processes; ``delete`` leaves no
    copy of the record in the key store's own files that a reader of them could find;
    a backend failure raises a ``StoreError``.
    """

    def get(self, session_ids: list[str]) -> dict[str, str]:
        """The records of those of ``session_ids`` that have one."""
        ...

    def add(self, session_id: str, record: str) -> str:
        """Store ``record`` unless the session has one already; return the one stored."""
        ...

    def replace(self, session_id: str, old: str, new: str) -> bool:
        """Replace the session's record by ``new`` if it is still ``old``; say if it was."""
        ...

    def delete(self, session_id: str) -> None:
        """Forget the session's record (a no-op if it has none)."""
        ...

    def page(self, cursor: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        """``(session_id, record)`` of about ``limit`` sessions from ``cursor`` (``None``:
        the start), and the cursor of the next page (``None``: that was the last).
        A walk returns every record present throughout it at least once."""
        ...

    def count(self) -> int:
        """How many records the key store holds."""
        ...

    def close(self) -> None:
        """Release what the key store opened (not what it was given)."""
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


@runtime_checkable
class LedgerMemory(Protocol):
    """A ``SessionMemory`` that keeps a usage ledger: the runner records every run in it.

    ``StoreMemory`` is one. The runner hands the run's record to the run's last
    ``add_messages`` call (``run=``), so recording costs no extra write; a run whose items
    are rolled back calls ``add_messages(session_id, [], run=record)``.
    """

    async def add_messages(
        self,
        session_id: str,
        messages: list[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """As ``Store.add_messages``."""
        ...

    async def usage(self, session_id: str) -> SessionUsage:
        """As ``Store.usage``."""
        ...

    async def runs(self, session_id: str, limit: int = 20) -> list[RunRecord]:
        """As ``Store.runs``."""
        ...


@runtime_checkable
class RunStore(LeaseStore, Protocol):
    """A ``LeaseStore`` that does a run's store work in two calls: one at its start, one
    at its end (each one round trip where the engine allows). Every store of
    agentsession is one (``StoreBase``).
    """

    def lock_and_read(
        self,
        session_id: str,
        owner: str,
        lease: float,
        limit: int | None = None,
        *,
        tool_safe: bool = True,
    ) -> list[dict[str, Any]] | None:
        """``try_lock``, then (if taken) ``get_messages(session_id, limit,
        tool_safe=tool_safe)``; ``None`` when another owner holds the lease.

        Raises:
            TypeError, ValueError: a bad argument; nothing is taken.
            StoreError: the backend failed; the lease is not held afterwards.
        """
        ...

    def write_and_unlock(
        self,
        session_id: str,
        owner: str,
        messages: Iterable[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """``add_messages`` (none is fine; with ``run``, the run's record goes with them,
        as ``add_messages(..., run=run)``), then ``unlock``: the lease is given back
        whether the add committed or failed.

        Raises:
            TypeError: a message is not JSON-ready; nothing is stored.
            ValueError: a bad ``session_id`` or ``owner``.
            StoreError: the backend failed; nothing of the add is stored.
        """
        ...


@runtime_checkable
class RunMemory(LeasingMemory, Protocol):
    """The async twin of ``RunStore``: what the runner uses, when a memory offers it, to
    start and end a run with one call each. ``StoreMemory`` is one.
    """

    async def lock_and_read(
        self,
        session_id: str,
        owner: str,
        lease: float,
        limit: int | None = None,
        *,
        tool_safe: bool = True,
    ) -> list[dict[str, Any]] | None:
        """As ``RunStore.lock_and_read``."""
        ...

    async def write_and_unlock(
        self,
        session_id: str,
        owner: str,
        messages: Iterable[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """As ``RunStore.write_and_unlock``."""
        ...
