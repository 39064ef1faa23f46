"""What every store shares: ``StoreBase``, which owns the public methods, and the checks.

Engine-neutral: ``StoreBase`` checks every argument of every public method here, once,
so a caller mistake raises the same ``TypeError`` / ``ValueError`` with the same message
whatever the engine; then it calls a private hook the engine implements (``_append``,
``_newest_rows``, ``_cut``...). The turn walk of ``rewind``, the tool-safe window, the
decoding of stored rows and the time-to-live run by writers live here too. This module
imports no engine.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from .._serialize import EncodedMessages, decode_messages, encode_messages
from .._validate import check_limit, check_session_id
from ..encryption import Encryption
from ..exceptions import NotSupportedError, SessionBusy
from ..protocol import (
    CompactionRecord,
    KeyStore,
    LeaseHolder,
    RunRecord,
    SearchHit,
    SessionInfo,
    SessionPage,
    SessionUsage,
)
from ..window import tool_safe_tail
from . import compacting
from .encrypted import Codec, EncryptedHooks
from .history_cache import HistoryCache, Since
from .jsonl import JsonlMixin
from .runs import check_run
from .values import (
    Progress,
    check_text,
    check_timestamp,
    dump_metadata,
    find_lone_surrogate,
    load_metadata,
    metadata_matches,
)

__all__ = (
    "Progress",
    "Row",
    "StoreBase",
    "check_count",
    "check_fork",
    "check_lease",
    "check_messages",
    "check_metadata_filter",
    "check_remove",
    "check_search",
    "check_text",
    "check_timestamp",
    "check_ttl",
    "decode_cursor",
    "dump_metadata",
    "encode_cursor",
    "info_from_row",
    "is_user_message",
    "load_metadata",
    "merge_metadata",
    "metadata_matches",
    "prune_cutoff",
)

T = TypeVar("T")

#: A stored message as the hooks hand it over: ``(row key, message JSON text)``. The key
#: (a position, an index) names the row in the log message of a corrupt one.
Row = tuple[Any, str]

logger = logging.getLogger("agentsession")

#: Seconds an edit's lease lasts on engines whose leases expire: far longer than any
#: edit takes, short enough that a process killed mid-edit blocks runs only briefly.
_EDIT_LEASE = 30.0
#: The first and the longest pause between two tries for a lease a run holds.
_FIRST_PAUSE, _MAX_PAUSE = 0.005, 0.1


def check_count(value: Any, name: str, *, minimum: int) -> int:
    """Return ``value`` if it is an int of at least ``minimum`` (``bool`` refused).

    Raises:
        TypeError: not an int.
        ValueError: below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def info_from_row(row: tuple[str, int, float, float, str]) -> SessionInfo:
    """A ``SessionInfo`` from ``(session_id, message_count, created_at, updated_at, metadata)``."""
    session_id, count, created, updated, metadata = row
    return SessionInfo(
        session_id=session_id,
        message_count=count,
        created_at=datetime.fromtimestamp(created, timezone.utc),
        updated_at=datetime.fromtimestamp(updated, timezone.utc),
        metadata=load_metadata(metadata, session_id),
    )


def check_ttl(ttl: Any, name: str = "ttl") -> timedelta:
    """Return ``ttl`` if it is a positive ``timedelta``.

    Raises:
        TypeError: not a ``timedelta``.
        ValueError: zero or negative.
    """
    if not isinstance(ttl, timedelta):
        raise TypeError(f"{name} must be a timedelta, got {ttl!r:.80}")
    if ttl <= timedelta(0):
        raise ValueError(f"{name} must be positive, got {ttl!r}")
    return ttl


def is_user_message(decoded: list[dict[str, Any]]) -> bool:
    """Whether ``decoded`` (one decoded row, or none) is a user message: a turn's start."""
    return (
        bool(decoded)
        and decoded[0].get("role") == "user"
        and decoded[0].get("type", "message") == "message"
    )


# -- sessions listing ----------------------------------------------------------------------


def check_metadata_filter(metadata: Any) -> dict[str, Any]:
    """Return a ``list_sessions(metadata=...)`` filter as a dict (``{}`` for ``None``).

    Values are compared by JSON type: ``True`` does not match ``1``, ``1`` matches ``1.0``.

    Raises:
        TypeError: not a dict, a key that is not a str, or a value that is not a str,
            finite number, bool or None (the message names it).
        ValueError: a key or value holds a lone surrogate (no stored metadata can).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata filter must be a dict, not {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata filter keys must be str, got {key!r}")
        if not (
            value is None
            or isinstance(value, (str, bool))
            or (isinstance(value, (int, float)) and math.isfinite(value))
        ):
            raise TypeError(
                f"metadata filter value for {key!r} must be a str, finite number, bool or "
                f"None, got {value!r:.80}"
            )
    bad = find_lone_surrogate(metadata)
    if bad is not None:
        raise ValueError(f"metadata filter holds a lone surrogate: {bad!r:.80}")
    return dict(metadata)


def encode_cursor(updated_at: float, key: int | str) -> str:
    """An opaque paging cursor: the last session's ``updated_at`` and tie-breaking key."""
    return base64.urlsafe_b64encode(json.dumps([2, updated_at, key]).encode()).decode()


def decode_cursor(cursor: Any) -> tuple[float, Any]:
    """``(updated_at, key)`` from a cursor made by ``encode_cursor``.

    Raises:
        TypeError: not a str.
        ValueError: not a cursor this version made (the message quotes it).
    """
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a str from a previous page, got {cursor!r}")
    try:
        version, updated, key = json.loads(base64.urlsafe_b64decode(cursor).decode())
        if version != 2 or not check_timestamp(updated) or not isinstance(key, (int, str)):
            raise ValueError(version)
        return float(updated), key
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValueError(
            f"cursor {cursor!r:.60} is not a cursor returned by list_sessions_page"
        ) from None


# -- search, fork, prune -------------------------------------------------------------------


def check_search(query: Any, session_id: Any, limit: Any, highlight: Any) -> int:
    """Check ``search`` arguments; return ``limit``.

    Raises:
        TypeError: ``query`` not a str, ``highlight`` not a pair of str, bad types.
        ValueError: a bad ``session_id``, a ``limit`` below 1, or a highlight mark
            holding a lone surrogate.
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, not {type(query).__name__}: {query!r:.80}")
    if session_id is not None:
        check_session_id(session_id)
    limit = check_count(limit, "limit", minimum=1)
    if not (
        isinstance(highlight, tuple)
        and len(highlight) == 2
        and all(isinstance(mark, str) for mark in highlight)
    ):
        raise TypeError(f"highlight must be a pair of str, got {highlight!r}")
    for mark in highlight:
        check_text(mark, "highlight")
    return int(limit)


def check_fork(session_id: Any, new_session_id: Any, at: Any) -> None:
    """Check ``fork`` arguments.

    Raises:
        TypeError, ValueError: a bad id, the same id twice, or ``at`` not an int >= 0.
    """
    check_session_id(session_id)
    check_session_id(new_session_id)
    if session_id == new_session_id:
        raise ValueError(f"cannot fork session {session_id!r} into itself")
    if at is not None:
        check_count(at, "at", minimum=0)


def prune_cutoff(older_than: Any, keep_last: Any, batch: Any) -> float | None:
    """Check ``prune`` arguments; return ``older_than`` as a Unix time (or ``None``).

    Sessions last active before the returned time are old.

    Raises:
        TypeError: a bad argument type.
        ValueError: neither ``older_than`` nor ``keep_last``, a negative value, a naive
            ``datetime``, or ``batch`` below 1.
    """
    cutoff: float | None = None
    if older_than is None:
        pass
    elif isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise ValueError(f"older_than must not be negative, got {older_than!r}")
        cutoff = time.time() - older_than.total_seconds()
    elif isinstance(older_than, datetime):
        if older_than.tzinfo is None:
            raise ValueError(
                f"older_than must be timezone-aware (e.g. tzinfo=timezone.utc), got {older_than!r}"
            )
        cutoff = older_than.timestamp()
    else:
        raise TypeError(f"older_than must be a datetime, timedelta or None, got {older_than!r:.80}")
    if keep_last is not None:
        check_count(keep_last, "keep_last", minimum=0)
    check_count(batch, "batch", minimum=1)
    if cutoff is None and keep_last is None:
        raise ValueError("prune needs older_than, keep_last or both")
    return cutoff


def check_messages(messages: Any) -> tuple[list[Any], list[str]]:
    """Encode the messages of an ``add_messages`` call: any iterable of JSON objects.

    Returns:
        The messages as a list, and one JSON text per message, in order (see
        ``_serialize.encode_messages``: a string holding a lone surrogate is written as
        a ``\\u`` escape and reads back identical).

    Raises:
        TypeError: ``messages`` is not iterable, or is a str, bytes or a dict (one JSON
            object rather than a sequence of them); or a message is not a JSON object or
            holds a value JSON cannot represent (the message names the item).
    """
    if isinstance(messages, (str, bytes, bytearray, Mapping)) or not isinstance(messages, Iterable):
        raise TypeError(
            "messages must be a list (or another iterable) of JSON objects, not "
            f"{type(messages).__name__}: {messages!r:.80}"
        )
    if type(messages) is EncodedMessages:  # encoded and checked already (a run's items)
        return messages, messages.texts
    items = messages if isinstance(messages, list) else list(messages)
    return items, encode_messages(items)


def check_lease(session_id: Any, owner: Any, lease: Any = 1.0) -> float:
    """Check ``try_lock`` / ``unlock`` arguments; return ``lease`` as a float.

    Raises:
        TypeError: a bad ``session_id`` type, ``owner`` not a str, or ``lease`` not a
            number (``bool`` is not).
        ValueError: a bad ``session_id``, an empty ``owner`` or one holding a lone
            surrogate, or a ``lease`` that is not a positive finite number of seconds.
    """
    check_session_id(session_id)
    check_text(owner, "owner")
    if not owner:
        raise ValueError("owner must not be empty")
    if isinstance(lease, bool) or not isinstance(lease, (int, float)):
        raise TypeError(f"lease must be a number of seconds, got {lease!r:.80}")
    if not (math.isfinite(lease) and lease > 0):
        raise ValueError(f"lease must be a positive finite number of seconds, got {lease!r}")
    return float(lease)


def check_remove(remove: Any) -> list[str]:
    """Check ``update_metadata(remove=...)``: a list or tuple of str keys.

    Raises:
        TypeError: a str, or an item that is not a str.
        ValueError: a key holding a lone surrogate.
    """
    if isinstance(remove, (str, bytes)) or not isinstance(remove, Iterable):
        raise TypeError(f"remove must be a list of str keys, got {remove!r:.80}")
    keys = list(remove)
    if not all(isinstance(key, str) for key in keys):
        raise TypeError(f"remove must be a list of str keys, got {remove!r:.80}")
    for key in keys:
        check_text(key, "remove")
    return keys


def merge_metadata(
    current: Mapping[str, Any], changes: Mapping[str, Any], remove: Iterable[str]
) -> dict[str, Any]:
    """``current`` with ``changes`` set and the keys ``remove`` deleted (top level)."""
    merged = dict(current)
    merged.update(changes)
    for key in remove:
        merged.pop(key, None)
    return merged


K = TypeVar("K")


def plan_idle_batch(
    sessions: Iterable[tuple[K, int]], batch: int
) -> tuple[list[K], tuple[K, int] | None]:
    """Which idle sessions one prune batch deletes, at most ``batch`` messages in all.

    Args:
        sessions: ``(key, message count)`` of idle sessions, in the order to delete them.
        batch: the most messages one batch deletes.

    Returns:
        The keys of the sessions deleted whole (while they fit), and, for the next one if
        it does not fit, ``(key, how many of its newest messages to delete)``: deleting
        the newest keeps what stays a dense 1..n history with a correct count.
    """
    whole: list[K] = []
    budget = batch
    for key, count in sessions:
        if count > budget:
            return whole, (key, budget)
        whole.append(key)
        budget -= count
        if budget == 0:
            break
    return whole, None


def plan_trim_batch(
    sessions: Iterable[tuple[K, int]], keep_last: int, batch: int
) -> list[tuple[K, int]]:
    """How many oldest messages one ``keep_last`` batch cuts from each session.

    Args:
        sessions: ``(key, message count)`` of sessions holding more than ``keep_last``.
        keep_last: how many newest messages each session keeps.
        batch: the most messages one batch deletes.

    Returns:
        ``(key, messages to cut)`` for each session this batch reaches, in order.
    """
    cuts: list[tuple[K, int]] = []
    budget = batch
    for key, count in sessions:
        cut = min(count - keep_last, budget)
        cuts.append((key, cut))
        budget -= cut
        if budget == 0:
            break
    return cuts


# -- the store base ------------------------------------------------------------------------


def _check_read(limit: Any, tool_safe: Any) -> int | None:
    """``get_messages``' ``limit`` and ``tool_safe``, checked; returns the limit."""
    checked = check_limit(limit)
    if not isinstance(tool_safe, bool):
        raise TypeError(f"tool_safe must be a bool, got {tool_safe!r:.80}")
    return checked


def _rows_wanted(limit: int, tool_safe: bool) -> int:
    """How many of the newest rows a read of ``limit`` messages fetches."""
    # A tool-safe window reads one row more than asked for: the item before the window
    # tells whether the window's first item lost its reasoning item (window.tool_safe_tail).
    return limit + 1 if tool_safe else limit


def _decode_read(
    session_id: str,
    rows: list[Row],
    limit: int | None,
    tool_safe: bool,
    fetch: Callable[[int], list[Row]] | None = None,
) -> list[dict[str, Any]]:
    """The messages of a read: ``rows`` oldest first (``limit`` None), or the newest
    ``_rows_wanted(limit, tool_safe)`` rows, newest first.

    Corrupt rows do not count toward ``limit``, as in the SDK's ``SQLiteSession``: when
    one was skipped and the session may hold more, ``fetch(n)`` (the newest ``n`` rows,
    newest first) reads twice as many, until enough valid ones are read or the session
    ends. A read with no corrupt row decodes its rows once, as before.
    """
    where = _rows_where(session_id)
    if limit is None:
        return decode_messages(rows, where)
    if limit == 0:
        return []
    wanted = read = _rows_wanted(limit, tool_safe)
    messages = decode_messages(rows[::-1], where)
    while fetch is not None and len(messages) < min(len(rows), wanted) and len(rows) == read:
        read *= 2
        rows = fetch(read)
        messages = decode_messages(rows[::-1], where)
    if len(messages) > wanted:
        messages = messages[len(messages) - wanted :]
    if not tool_safe:
        return messages
    # limit + 1 valid messages: the one past the window tells whether the window's
    # first item lost its reasoning item (window.tool_safe_tail); fewer: the whole session.
    earlier = len(messages) - limit if len(messages) > limit else 0
    return tool_safe_tail(messages, earlier, whole=len(messages) <= limit)


def _rows_where(session_id: str) -> str:
    return f"session {session_id!r}"


class StoreBase(JsonlMixin):
    """The public methods of every store, over the private hooks an engine implements.

    Each public method checks its arguments here (the same exception, with the same
    message, on every engine), then calls one hook; the hooks do the storage and nothing
    else. An engine implements every ``_hook`` below that raises ``NotImplementedError``
    (and ``JsonlMixin``'s four), calls ``_set_ttl`` in its constructor, and sets
    ``lease_blocks`` / ``lease_expires`` (see ``protocol.LeaseStore``).

    An engine whose constructor takes ``encryption=`` passes it to ``_set_encryption``,
    which puts ``stores.encrypted``'s codec in front of the hooks of that instance; a
    store without encryption runs its hooks as they are.

    Thread safety: every method may be called from any number of threads at once, as
    the engine's hooks allow (all of agentsession's do).
    """

    #: The master keys, for a store opened with ``encryption=`` (else ``None``).
    encryption: Encryption | None = None
    _encrypted: EncryptedHooks | None = None
    #: Decoded histories kept for full reads; set by an engine that implements
    #: ``_rows_since`` (see ``history_cache``).
    _history_cache: HistoryCache | None = None

    #: Whether ``try_lock`` / ``unlock`` wait on I/O (see ``protocol.LeaseStore``).
    lease_blocks: bool
    #: Whether a lease lapses ``lease`` seconds after it was taken unless renewed.
    lease_expires: bool
    #: Whether ``get_messages`` may wait on I/O (see ``protocol.Store.reads_block``).
    reads_block: bool = True

    #: Sessions idle for longer than this are deleted by the writers (``None``: never).
    ttl: timedelta | None = None

    #: How long ``clear_session``, ``rewind``, ``truncate`` and ``fork`` wait, in seconds,
    #: for a run holding the session to end before raising ``SessionBusy`` (0: do not
    #: wait). Set it on a store: ``store.lock_timeout = 0``.
    lock_timeout: float = 30.0

    #: The type of the tie-breaking key this engine puts in a paging cursor.
    _cursor_key: type = int

    def _set_ttl(self, ttl: Any) -> None:
        """Check and keep the constructor's ``ttl`` (``None`` or a positive timedelta).

        Raises:
            TypeError: not a ``timedelta``.
            ValueError: zero or negative.
        """
        self.ttl = None if ttl is None else check_ttl(ttl)
        self._next_expiry = 0.0
        self._expiry_lock = threading.Lock()

    def _set_encryption(
        self, encryption: Any, default_key_store: Callable[[], KeyStore], where: str
    ) -> None:
        """Check the constructor's ``encryption`` and, if given, encrypt this store.

        Calls ``_check_encrypted`` first, so an encrypted database is never opened
        without its keys, nor a plaintext one with them.

        Raises:
            TypeError: ``encryption`` is not an ``Encryption``.
            SchemaError: as ``_check_encrypted`` raises it.
        """
        if encryption is not None and not isinstance(encryption, Encryption):
            raise TypeError(
                f"encryption must be an agentsession.Encryption, got {encryption!r:.80}"
            )
        self._check_encrypted(encryption is not None)
        if encryption is None:
            return
        key_store = encryption.key_store
        owned = key_store is None
        if key_store is None:
            key_store = default_key_store()
        codec = Codec(encryption, key_store, where)
        hooks = EncryptedHooks(self, codec, owns_key_store=owned, base=StoreBase)
        hooks.install()
        self.encryption = encryption
        self._encrypted = hooks

    @property
    def key_store(self) -> KeyStore | None:
        """Where the wrapped data keys are (``None``: the store is not encrypted)."""
        return None if self._encrypted is None else self._encrypted.codec.key_store

    def _check_encrypted(self, encrypted: bool) -> None:
        """Record that the database is encrypted (if it holds no session yet), or check it.

        Raises:
            SchemaError: ``encrypted`` is false and the database is encrypted, or true
                and the database holds sessions stored in plaintext.
        """
        raise NotImplementedError

    def _encryption_needed(self, what: str) -> EncryptedHooks:
        if self._encrypted is None:
            raise NotSupportedError(
                f"{self!r} is not encrypted: {what} needs a store opened with "
                "encryption=Encryption(key)"
            )
        return self._encrypted

    def rotate_keys(self, *, batch: int = 500, progress: Progress | None = None) -> int:
        """Re-wrap every session's data key under the primary master key.

        Messages are not re-encrypted: only the data keys, ``batch`` at a time, each
        batch a step of its own, so an interrupted rotation is resumed by calling this
        again (keys already under the primary are skipped). Afterwards the older master
        keys can be dropped from the ``Encryption``.

        Args:
            batch: data keys read and re-wrapped per step (1 or more).
            progress: called with the number of data keys looked at after each step.

        Returns:
            How many data keys were re-wrapped.

        Raises:
            TypeError, ValueError: ``batch`` not an int >= 1, ``progress`` not callable.
            NotSupportedError: the store is not encrypted.
            DecryptionError: a data key that none of the master keys unwraps (the
                message names its session); the keys before it stay re-wrapped.
            StoreError: the key store failed.
        """
        check_count(batch, "batch", minimum=1)
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable, got {progress!r:.80}")
        return self._encryption_needed("rotate_keys").rotate(batch, progress)

    def shred(self, session_id: str) -> None:
        """Make the session unreadable for good: delete its data key, then the session.

        Its messages can then never be decrypted again, not even from a copy of them
        taken earlier (a backup of the database) together with the master keys; a
        copy of the key store taken earlier still holds the data key (see
        ``docs/encryption.md``). A no-op for a session that has neither.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            NotSupportedError: the store is not encrypted.
            StoreBusy, StoreClosed, StoreError: as for ``clear_session``; the data key
                is deleted first, so a failure after it leaves the rows unreadable.
        """
        check_session_id(session_id)
        self._encryption_needed("shred").shred(session_id)

    # -- messages --------------------------------------------------------------------------

    def get_messages(
        self,
        session_id: str,
        limit: int | None = None,
        *,
        tool_safe: bool = True,
        include_archived: bool = False,
    ) -> list[dict[str, Any]]:
        """Return the session's newest ``limit`` messages (all if ``None``), oldest first.

        A window (``limit`` set) is tool-safe by default: it never holds a tool output
        whose call was cut off, a call without its output, or an item whose reasoning
        item was cut off, so it may hold fewer than ``limit`` messages (see
        ``agentsession.window``). With ``tool_safe=False`` it is exactly the newest
        ``limit`` stored items (what the SDK's ``Session.get_items(limit)`` promises).
        Reads never wait for writers. A stored row that is not valid JSON is skipped
        with a warning on the ``agentsession`` logger.

        With ``include_archived=True`` the messages are the session's history as it
        would be with every compaction undone (``uncompact``): the archived items in
        their places, the summary items left out, in one consistent read (see
        ``docs/compaction.md``); ``limit`` then counts in that history.

        Raises:
            TypeError, ValueError: a bad ``session_id``, ``limit``, ``tool_safe`` or
                ``include_archived``.
            StoreBusy: (PostgreSQL) no pooled connection came free in time.
            StoreClosed: the store is closed.
            StoreError: the backend failed.
        """
        check_session_id(session_id)
        limit = _check_read(limit, tool_safe)
        if include_archived is not False:
            if not isinstance(include_archived, bool):
                raise TypeError(f"include_archived must be a bool, got {include_archived!r:.80}")
            return compacting.with_archived(self, session_id, limit, tool_safe)
        if limit == 0:
            return []
        if limit is None:
            return self._full_read(session_id)
        rows = self._newest_rows(session_id, _rows_wanted(limit, tool_safe))
        return _decode_read(
            session_id, rows, limit, tool_safe, lambda n: self._newest_rows(session_id, n)
        )

    def _full_read(self, session_id: str) -> list[dict[str, Any]]:
        """Every message of the session, oldest first: from the history cache where the
        engine has one (only the rows added since are fetched and decoded)."""
        where = _rows_where(session_id)
        cache = self._history_cache
        if cache is None:
            return decode_messages(self._all_rows(session_id), where)
        return cache.full_read(
            session_id,
            lambda after: self._rows_since(session_id, after),
            lambda: self._all_rows(session_id),
            lambda rows: decode_messages(rows, where),
        )

    def add_messages(
        self,
        session_id: str,
        messages: Iterable[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """Append ``messages`` to the session atomically, keeping their order.

        ``messages`` is any iterable of JSON objects (a list, a tuple, a generator). Every
        message is encoded before the backend is called, so bad input stores nothing.
        Concurrent adds to one session, from any thread or process, never interleave.
        With a ``ttl``, the idle sessions are deleted now and then after the add has
        committed; a failure of that is logged as a warning on the ``agentsession``
        logger, never raised: the add is stored.

        With ``run`` (what the runner passes with a run's items), the run's record joins
        the session's usage ledger in the same atomic step: both are stored or neither.
        ``messages`` may then be empty (a rolled-back run records only what it spent). A
        run record alone does not create the session's record (``session_info``).

        Raises:
            TypeError: ``messages`` is not an iterable of messages, or a message is not
                a JSON object or holds a value JSON cannot represent; the message names
                the item; or ``run`` is not a valid ``RunRecord``. Nothing is stored.
            ValueError: a bad ``session_id``, or a ``run`` of another session or with a
                bad field (named).
            StoreBusy: the backend stayed busy (a write lock, the connection pool, a
                loading Redis) past its timeout.
            StoreClosed: the store is closed.
            StoreError: the backend failed; nothing of this add is stored.
        """
        check_session_id(session_id)
        items, encoded = check_messages(messages)
        if run is not None:
            self._append_run(session_id, encoded, items, check_run(run, session_id))
        elif not encoded:
            return
        else:
            self._append(session_id, encoded, items)
        if self.ttl is not None:
            self._expire_now_and_then(self.ttl)

    def _expire_now_and_then(self, ttl: timedelta) -> None:
        # The time-to-live is enforced by the writers: at most once per tenth of the TTL
        # (and at least once a minute) per store, after its own add has committed, one
        # add deletes the idle sessions. Its failure is logged: the add itself is stored.
        now = time.monotonic()
        with self._expiry_lock:
            if now < self._next_expiry:
                return
            self._next_expiry = now + min(ttl.total_seconds() / 10, 60.0)
        try:
            self._expire(ttl)
        except Exception as exc:
            logger.warning("could not expire the idle sessions of %r: %s", self, exc)

    def pop_message(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return the session's newest message (``None`` if it has none).

        Each removal is atomic. A newest row that is corrupt is removed too, and the
        next valid one returned.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        while True:
            row = self._pop(session_id)
            if row is None:
                return None
            decoded = decode_messages([row], _rows_where(session_id))
            if decoded:
                return decoded[0]

    def rewind(self, session_id: str, turns: int = 1) -> list[dict[str, Any]]:
        """Remove the session's last ``turns`` turns whole and return what was removed.

        A turn starts at a user message and runs to the next one, so tool calls, their
        outputs and the replies of a turn go with it. Fewer turns than asked for means
        the whole session is emptied. Atomic: all of it or none of it. Waits for a run
        holding the session (see ``_edit``).

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``turns`` not an int >= 1.
            SessionBusy: a run held the session for longer than ``lock_timeout``.
            StoreBusy: (Redis) the session kept changing for 100 attempts; or as for
                ``add_messages``.
            StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        check_count(turns, "turns", minimum=1)
        where = _rows_where(session_id)

        def turns_start(newest_first: Iterable[Row]) -> Any:
            # Walk back from the newest message to the turns-th user message: that is
            # where the turns to remove start (None: there are fewer, take them all).
            found = 0
            for key, text in newest_first:
                if is_user_message(decode_messages([(key, text)], where)):
                    found += 1
                    if found == turns:
                        return key
            return None

        rows = self._edit(session_id, lambda: self._cut_turns(session_id, turns_start))
        return decode_messages(rows, where)

    def truncate(self, session_id: str, keep: int) -> list[dict[str, Any]]:
        """Keep the session's oldest ``keep`` messages; remove and return the rest.

        Cuts a session back to an earlier length, e.g. one read with ``message_count``
        before a change of your own. Atomic. Waits for a run holding the session (see
        ``_edit``).

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``keep`` not an int >= 0.
            SessionBusy: a run held the session for longer than ``lock_timeout``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        check_count(keep, "keep", minimum=0)
        rows = self._edit(session_id, lambda: self._cut(session_id, keep))
        return decode_messages(rows, _rows_where(session_id))

    def message_count(self, session_id: str) -> int:
        """How many messages the session holds (0 for an unknown session).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        return self._count(session_id)

    def clear_session(self, session_id: str) -> None:
        """Delete the session, all its messages and its run records (the usage ledger);
        a no-op for an unknown session.

        Atomic: an add racing the clear is deleted whole or lands whole in a new
        session. Waits for a run holding the session (see ``_edit``), so a run's turn is
        never cut in half.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            SessionBusy: a run held the session for longer than ``lock_timeout``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        self._edit(session_id, lambda: self._clear(session_id))

    # -- compaction (the work is in ``compacting``) ------------------------------------------

    def compaction_candidates(self, session_id: str, keep_turns: int = 2) -> list[dict[str, Any]]:
        """The oldest messages a compaction keeping the newest ``keep_turns`` turns would
        archive and summarise (``[]``: nothing to compact), oldest first.

        The cut never splits a tool exchange or a reasoning item from what follows it
        (``compaction.compaction_cut``). Pass ``len()`` of the result to
        ``compact_with(..., items=)``.

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``keep_turns`` not an int >= 1.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        check_count(keep_turns, "keep_turns", minimum=1)
        return compacting.candidates(self, session_id, keep_turns)

    def compact_with(
        self,
        session_id: str,
        summary: str,
        *,
        items: int,
        model: str = "",
        lease_owner: str | None = None,
    ) -> CompactionRecord:
        """Archive the session's oldest ``items`` messages and put one summary item
        (``compaction.summary_item(summary)``) in their place, atomically.

        The archived messages are kept as stored, byte for byte (``uncompact`` puts them
        back; ``get_messages(include_archived=True)`` reads them). ``memory.compact`` calls
        this after the summary model has written ``summary``; call it yourself to store a
        summary you wrote. Holds the session's run lease while it works, as ``rewind``
        does (see ``_edit``), unless ``lease_owner`` names the lease the caller holds
        already (a run compacting its own session).

        Args:
            session_id: the session.
            summary: the summary's text.
            items: how many of the oldest messages to archive (1 or more), e.g. ``len()``
                of ``compaction_candidates``; at least one message must stay after them.
            model: the name of the model that wrote ``summary``, for the record.
            lease_owner: the owner of the run lease the caller holds on the session.

        Returns:
            The compaction's record (also listed by ``compactions``).

        Raises:
            TypeError: a bad argument type.
            ValueError: a bad ``session_id``; ``items`` below 1 or not leaving a message
                after the cut; or a cut that would split a tool exchange (the message
                says so). Nothing is changed.
            SessionBusy: a run held the session for longer than ``lock_timeout``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        check_text(summary, "summary")
        check_count(items, "items", minimum=1)
        check_text(model, "model")

        def work() -> CompactionRecord:
            return compacting.compact(self, session_id, summary, items, model)

        if lease_owner is None:
            return self._edit(session_id, work)
        check_lease(session_id, lease_owner)
        return work()

    def uncompact(self, session_id: str) -> CompactionRecord | None:
        """Undo the session's newest compaction: its archived messages go back in front,
        exactly as they were stored, in place of its summary item; return its record
        (``None``: the session has no compaction, nothing is changed).

        Atomic. Repeated calls undo earlier compactions in turn, newest first. If the
        summary item is no longer the session's first message (a ``truncate`` removed
        it), the archived messages are put back in front of what is there, so nothing
        is lost. Waits for a run holding the session (see ``_edit``).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            SessionBusy: a run held the session for longer than ``lock_timeout``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        return self._edit(session_id, lambda: compacting.uncompact(self, session_id))

    def compactions(self, session_id: str) -> list[CompactionRecord]:
        """The session's compactions still in force, oldest first (``[]``: none).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        return compacting.records(self, session_id)

    # -- the usage ledger ------------------------------------------------------------------

    def usage(self, session_id: str) -> SessionUsage:
        """The sums of the session's run records, read in one step.

        Returns:
            All zeros (``runs=0``, no times) for a session with no recorded run.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        return self._usage(session_id)

    def runs(self, session_id: str, limit: int = 20) -> list[RunRecord]:
        """The session's newest ``limit`` run records, newest (last ended) first.

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``limit`` not an int >= 1.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        check_count(limit, "limit", minimum=1)
        return self._runs(session_id, limit)

    def usage_by_session(self, *, limit: int | None = None) -> list[tuple[str, SessionUsage]]:
        """``(session_id, usage)`` of the sessions with recorded runs, most total tokens
        first (ties by session id); the top ``limit`` of them, or all for ``None``.

        Raises:
            TypeError, ValueError: ``limit`` not ``None`` or an int >= 1.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        if limit is not None:
            check_count(limit, "limit", minimum=1)
        return self._usage_by_session(limit)

    # -- the run lease ---------------------------------------------------------------------

    def _edit(self, session_id: str, work: Callable[[], T]) -> T:
        """Run ``work`` holding the session's run lease, so that it never cuts into a run.

        ``clear_session``, ``rewind``, ``truncate`` and ``fork`` change a session (or copy
        it) and go through here: while a run of any thread or process holds the session,
        they wait for it, retrying with pauses of 5 ms growing to 100 ms, for up to
        ``lock_timeout`` seconds. Called from inside a run on that run's own session,
        they therefore wait for the run itself and raise ``SessionBusy``.

        Raises:
            SessionBusy: the lease stayed held for longer than ``lock_timeout``.
        """
        owner = f"{socket.gethostname()}:{os.getpid()}:edit:{uuid.uuid4().hex}"
        if not self._lock(session_id, owner, _EDIT_LEASE):
            deadline = time.monotonic() + self.lock_timeout
            pause = _FIRST_PAUSE
            while True:
                if time.monotonic() >= deadline:
                    raise SessionBusy(
                        f"session {session_id!r} is in use by a run"
                        + (f" (waited {self.lock_timeout:g} s)" if self.lock_timeout else "")
                    )
                time.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
                if self._lock(session_id, owner, _EDIT_LEASE):
                    break
        try:
            return work()
        finally:
            self._unlock(session_id, owner)

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take the session's run lease for ``owner`` unless another live owner holds it.

        Never waits for the lease. A lease lasts ``lease`` seconds (by the backend's
        clock) unless renewed by calling this again as the same owner, so a process that
        dies holding one blocks others only that long.

        Returns:
            ``True`` when ``owner`` holds the lease now.

        Raises:
            TypeError: a bad ``session_id`` type, ``owner`` not a str, or ``lease`` not a
                number.
            ValueError: a bad ``session_id``, an ``owner`` holding a lone surrogate, or
                ``lease`` not a positive finite number of seconds.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        seconds = check_lease(session_id, owner, lease)
        return self._lock(session_id, owner, seconds)

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the session's run lease back, if ``owner`` still holds it; else nothing.

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``owner`` (as for ``try_lock``).
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_lease(session_id, owner)
        self._unlock(session_id, owner)

    def lease_holder(self, session_id: str) -> LeaseHolder | None:
        """Who holds the session's run lease now, for a caller about to wait for it.

        Taking a lease records nothing for this (runs pay nothing): the holder is found
        when asked, which may cost more than a lease (SQLite on Linux reads ``/proc``;
        PostgreSQL reads ``pg_locks``; Redis reads the lease's owner). The answer can be
        stale by the time it returns.

        Returns:
            ``None`` when no run holds the lease; else the holder's pid and host, each
            ``None`` where the backend cannot tell (a lease taken on another host over
            NFS, or under an owner name not of agentsession's ``"host:pid:..."`` form).

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        return self._lease_holder(session_id)

    # -- a run's two calls (protocol.RunStore) ---------------------------------------------

    def lock_and_read(
        self,
        session_id: str,
        owner: str,
        lease: float,
        limit: int | None = None,
        *,
        tool_safe: bool = True,
    ) -> list[dict[str, Any]] | None:
        """Take the run lease (as ``try_lock``) and, if taken, read the session (as
        ``get_messages(session_id, limit, tool_safe=tool_safe)``): a run's first call.

        One call, and one round trip where the engine allows (Redis: one script), so a
        run pays for one trip to the store at its start instead of two.

        Returns:
            The messages, or ``None`` when another owner holds the lease (nothing read).

        Raises:
            TypeError, ValueError: a bad argument (as for ``try_lock`` and
                ``get_messages``); nothing is taken.
            StoreBusy, StoreClosed, StoreError: the backend failed; the lease is not held
                afterwards.
        """
        seconds = check_lease(session_id, owner, lease)
        limit = _check_read(limit, tool_safe)
        if limit == 0:
            return [] if self._lock(session_id, owner, seconds) else None
        if limit is None and self._history_cache is not None:
            if not self._lock(session_id, owner, seconds):
                return None
            try:
                return self._full_read(session_id)
            except BaseException:
                self._unlock(session_id, owner)
                raise
        wanted = None if limit is None else _rows_wanted(limit, tool_safe)
        rows = self._lock_and_rows(session_id, owner, seconds, wanted)
        if rows is None:
            return None
        if limit is None:
            return _decode_read(session_id, rows, limit, tool_safe)

        def fetch(count: int) -> list[Row]:  # corrupt rows were read: read more (leased)
            try:
                return self._newest_rows(session_id, count)
            except BaseException:
                self._unlock(session_id, owner)
                raise

        return _decode_read(session_id, rows, limit, tool_safe, fetch)

    def write_and_unlock(
        self,
        session_id: str,
        owner: str,
        messages: Iterable[dict[str, Any]],
        *,
        run: RunRecord | None = None,
    ) -> None:
        """Append ``messages`` (as ``add_messages``; none is fine; with ``run``, its record
        too, as ``add_messages(..., run=run)``) and then give the run lease back (as
        ``unlock``): a run's last call, one round trip where the engine allows (Redis:
        one script).

        The lease is given back whatever happens: after the add has committed, or after
        it failed (then nothing of it is stored).

        Raises:
            TypeError: a message is not JSON-ready, or ``run`` not a ``RunRecord``;
                nothing is stored, the lease is given back.
            ValueError: a bad ``session_id`` or ``owner`` (nothing is done), or a bad
                ``run`` (nothing is stored, the lease is given back).
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_lease(session_id, owner)
        try:
            items, encoded = check_messages(messages)
            if run is not None:
                check_run(run, session_id)
        except BaseException:
            self._unlock(session_id, owner)
            raise
        if run is None:
            self._append_and_unlock(session_id, owner, encoded, items)
        else:
            self._append_run_and_unlock(session_id, owner, encoded, items, run)
        if encoded and self.ttl is not None:
            self._expire_now_and_then(self.ttl)

    # -- sessions and metadata -------------------------------------------------------------

    def list_sessions(self, *, metadata: Mapping[str, Any] | None = None) -> list[SessionInfo]:
        """Return every session (or those matching ``metadata``), newest activity first.

        Args:
            metadata: keep only sessions whose metadata holds every one of these
                key/value pairs (values: str, number, bool or None; compared by JSON
                type, so ``True`` does not match ``1``).

        Raises:
            TypeError: a bad ``metadata`` filter.
            ValueError: a filter holding a lone surrogate.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        wanted = check_metadata_filter(metadata)
        return [info for info, _, _ in self._sessions(wanted, None, None)]

    def list_sessions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionPage:
        """Return one page of sessions, newest activity first, and the next page's cursor.

        Paging is by keyset, so every page costs the same however deep, and sessions
        with the same ``updated_at`` are neither repeated nor dropped. A session that
        becomes active while you page moves to the front: it is not returned twice, but
        if it had not been reached yet it is not returned at all in this walk.

        Args:
            limit: at most this many sessions per page (1 or more).
            cursor: ``next_cursor`` of the previous page; ``None`` for the first page.
            metadata: the same filter as ``list_sessions``; pass it on every page.

        Raises:
            TypeError: a bad ``limit``, ``cursor`` or ``metadata``.
            ValueError: ``limit`` below 1, or ``cursor`` was not made by this store's
                ``list_sessions_page``.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        limit = check_count(limit, "limit", minimum=1)
        wanted = check_metadata_filter(metadata)
        after: tuple[float, Any] | None = None
        if cursor is not None:
            after = decode_cursor(cursor)
            key = after[1]
            if isinstance(key, bool) or not isinstance(key, self._cursor_key):
                raise ValueError(
                    f"cursor {cursor!r:.60} is not a cursor returned by list_sessions_page"
                )
        found = self._sessions(wanted, after, limit + 1)
        page = found[:limit]
        next_cursor = None
        if len(found) > limit:
            _, updated, key = page[-1]
            next_cursor = encode_cursor(updated, key)
        return SessionPage([info for info, _, _ in page], next_cursor)

    def session_info(self, session_id: str) -> SessionInfo | None:
        """Return what the store knows about one session, or ``None`` if it has no record.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        return self._info(session_id)

    def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace the session's metadata with ``metadata`` (a JSON object).

        Creates the session's record (with no messages) if it has none yet. Changing
        metadata is not activity: ``updated_at`` stays as it was.

        Raises:
            TypeError: ``metadata`` is not a dict of JSON values; nothing is changed.
            ValueError: a bad ``session_id``, or a key or string in ``metadata`` holding
                a lone surrogate; nothing is changed.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        self._put_metadata(session_id, dump_metadata(metadata))

    def update_metadata(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        remove: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Merge ``changes`` into the session's metadata (top-level keys); return the result.

        Read, merge and write are one atomic step, so concurrent updates of different
        keys, from any process, never lose each other. Creates the session's record
        (with no messages) if it has none yet; ``updated_at`` does not change.

        Args:
            session_id: the session.
            changes: keys to set (a value ``None`` stores JSON null; it does not delete).
            remove: keys to delete (missing keys are ignored).

        Raises:
            TypeError: ``changes`` is not a dict of JSON values, or a key in ``remove``
                is not a str; nothing is changed.
            ValueError: a bad ``session_id``, or a lone surrogate in a key or string.
            StoreBusy: (Redis) the metadata kept changing for 100 attempts; or as for
                ``add_messages``.
            StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        dump_metadata(changes, "changes")
        keys = check_remove(remove)
        return self._update_metadata(session_id, dict(changes), keys)

    # -- search and fork -------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        limit: int = 20,
        raw: bool = False,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]:
        """Find messages by their words, best match first.

        Args:
            query: words that must all appear (in any order, any case). Nothing in it is
                query syntax unless ``raw`` is true, so any text is safe to pass.
            session_id: search this session only; ``None`` searches every session.
            limit: at most this many hits (1 or more).
            raw: pass ``query`` to the engine's full-text query parser as is (see the
                engine's class docstring for its syntax).
            highlight: the marks put around matched words in ``snippet``.

        Returns:
            The hits; ``[]`` when ``query`` has no words.

        Raises:
            TypeError: a bad argument type.
            ValueError: a bad ``session_id``, ``limit`` or highlight mark, or (``raw``
                only) a query the engine cannot parse; the message quotes it.
            NotSupportedError: the engine has no full-text search (Redis).
            StoreBusy, StoreClosed, StoreError: as for ``get_messages``.
        """
        limit = check_search(query, session_id, limit, highlight)
        if raw and find_lone_surrogate(query) is not None:
            raise ValueError(f"bad full-text query {query!r}: it holds a lone surrogate")
        # Lone surrogates cannot be words of a stored message's text: none matches them.
        text = query.encode("utf-8", "replace").decode("utf-8")
        if not text.replace("\x00", " ").split():
            self._search_supported()
            return []
        hits: list[SearchHit] = []
        for found_in, position, stored, snippet, rank in self._search(
            text, session_id, limit, raw, highlight
        ):
            decoded = decode_messages([(position, stored)], _rows_where(found_in))
            if decoded:
                hits.append(SearchHit(found_in, position, decoded[0], snippet, float(rank)))
        return hits

    def fork(self, session_id: str, new_session_id: str, *, at: int | None = None) -> int:
        """Copy the session's history up to position ``at`` into a new session.

        The copy keeps each message's ``created_at`` and the source's metadata
        (replacing any the target's record had); the new session is created, and last
        active, now. Run records (the usage ledger) are not copied: the new session has
        spent nothing yet. The source is not changed. The target is written atomically.
        Waits for a run holding the source session (see ``_edit``).

        Args:
            session_id: the session to copy from.
            new_session_id: the session to create; it must not hold messages yet.
            at: copy messages 1..``at`` (1-based, inclusive); ``None`` copies them all,
                ``0`` none (the new session then has only the metadata).

        Returns:
            How many messages were copied.

        Raises:
            TypeError: a bad argument type.
            ValueError: a bad id, the same id twice, no session ``session_id``,
                ``new_session_id`` already holds messages, or ``at`` is negative or
                past the source's last message. Nothing is changed.
            SessionBusy: a run held the source for longer than ``lock_timeout``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_fork(session_id, new_session_id, at)
        return self._edit(session_id, lambda: self._fork(session_id, new_session_id, at))

    # -- retention -------------------------------------------------------------------------

    def prune(
        self,
        *,
        older_than: datetime | timedelta | None = None,
        keep_last: int | None = None,
        batch: int = 500,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> int:
        """Delete idle sessions whole and/or trim every session to its newest messages.

        Work is done in atomic steps of at most ``batch`` deleted messages each, looping
        until nothing is left to do, so other writers get their turn between them.
        Trimming renumbers a session's kept messages 1..``keep_last`` (positions stay
        dense). Neither mode counts as activity: ``updated_at`` is not changed. A
        session deleted whole loses its newest messages first, so between steps it is a
        shorter but intact history, and its run records go with its last message
        (trimming keeps them). Sessions whose run lease is held are skipped.

        Args:
            older_than: delete sessions last active before this time (an aware
                ``datetime``) or longer ago than this (a ``timedelta``, counted back
                from the backend's clock).
            keep_last: trim every session to its newest ``keep_last`` messages (0 or
                more); applied after ``older_than``.
            batch: at most this many messages deleted per step.
            dry_run: count what would be deleted; change nothing.
            progress: called with the number of messages deleted after each step (on
                Redis: every ``batch`` messages and once at the end).

        Returns:
            How many messages were deleted (or would be, with ``dry_run``).

        Raises:
            TypeError: a bad argument type.
            ValueError: neither ``older_than`` nor ``keep_last`` given, a negative
                value, a naive ``datetime``, or ``batch`` below 1.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``; steps already
                done stay done.
        """
        cutoff = prune_cutoff(older_than, keep_last, batch)
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable, got {progress!r:.80}")
        if isinstance(older_than, timedelta):
            cutoff = self._clock() - older_than.total_seconds()
        return self._prune(cutoff, keep_last, batch, bool(dry_run), progress)

    def expire_idle(self, ttl: timedelta, batch: int = 500) -> int:
        """Delete every session idle for longer than ``ttl``; return how many sessions.

        The same work as ``prune(older_than=ttl)``, counted in sessions: this is what a
        store-wide time-to-live calls.

        Raises:
            TypeError: ``ttl`` is not a ``timedelta`` or ``batch`` not an int.
            ValueError: ``ttl`` is not positive, or ``batch`` below 1.
            StoreBusy, StoreClosed, StoreError: as for ``prune``.
        """
        check_ttl(ttl)
        check_count(batch, "batch", minimum=1)
        return self._expire_idle(self._clock() - ttl.total_seconds(), batch)

    def vacuum(self) -> None:
        """Give the space freed by deletions back (what that means is the engine's).

        Raises:
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        self._vacuum()

    # -- the hooks -------------------------------------------------------------------------

    def _all_rows(self, session_id: str) -> list[Row]:
        """Every stored message of the session, oldest first (one consistent read)."""
        raise NotImplementedError

    def _rows_since(self, session_id: str, after: Any) -> Since:
        """The session's mark, row count and rows with ``seq`` above ``after``, oldest
        first, read in one snapshot (only for an engine that sets ``_history_cache``)."""
        raise NotImplementedError

    def _newest_rows(self, session_id: str, count: int) -> list[Row]:
        """The session's newest ``count`` (1 or more) stored messages, newest first."""
        raise NotImplementedError

    def _append(self, session_id: str, encoded: list[str], messages: list[Any]) -> None:
        """Store the encoded messages (one or more) after the session's last, atomically.

        ``messages`` are the checked messages themselves, for an engine that indexes
        their words (``_serialize.message_text``)."""
        raise NotImplementedError

    def _append_run(
        self, session_id: str, encoded: list[str], messages: list[Any], run: RunRecord
    ) -> None:
        """As ``_append`` (``encoded`` may be empty: then no message and no session
        record is written), and store ``run`` in the session's ledger in the same
        atomic step."""
        raise NotImplementedError

    def _usage(self, session_id: str) -> SessionUsage:
        """The session's ledger summed, in one consistent read."""
        raise NotImplementedError

    def _runs(self, session_id: str, limit: int) -> list[RunRecord]:
        """The session's newest ``limit`` run records, newest first."""
        raise NotImplementedError

    def _usage_by_session(self, limit: int | None) -> list[tuple[str, SessionUsage]]:
        """Every ledger summed per session, most total tokens first, at most ``limit``."""
        raise NotImplementedError

    def _expire(self, ttl: timedelta) -> None:
        """Delete the sessions idle for longer than ``ttl`` (called after a committed add,
        at most once per tenth of the TTL). An engine whose backend expires sessions by
        itself overrides this to do nothing."""
        self.expire_idle(ttl)

    def _pop(self, session_id: str) -> Row | None:
        """Remove the session's newest stored message and return it (``None``: none)."""
        raise NotImplementedError

    def _cut_turns(self, session_id: str, turns_start: Callable[[Iterable[Row]], Any]) -> list[Row]:
        """Atomically: read the session newest first, pass the rows to ``turns_start``
        (which stops reading at the start it finds), and remove the rows from the key it
        returns on (all of them for ``None``). Return the removed rows, oldest first."""
        raise NotImplementedError

    def _cut(self, session_id: str, keep: int) -> list[Row]:
        """Atomically remove the session's messages after its oldest ``keep``; return them,
        oldest first."""
        raise NotImplementedError

    def _count(self, session_id: str) -> int:
        """How many messages the session holds (0 if it has no record)."""
        raise NotImplementedError

    def _compact(self, session_id: str, cut: int, summary: str, record: str) -> None:
        """Atomically: move the session's oldest ``cut`` stored messages (as stored, with
        their times) to a new newest entry of its archive, holding ``record`` (the text
        of ``compaction.dump_record``) and the stored summary; store the message JSON
        ``summary`` as its first message, the rest renumbered after it. The caller has
        checked that the session holds more than ``cut`` messages."""
        raise NotImplementedError

    def _uncompact(self, session_id: str) -> tuple[str, Row] | None:
        """Atomically: take the newest entry off the session's archive, remove the
        session's first message if it is that entry's stored summary, and put the
        archived messages back in front (as stored, with their times). Return the
        entry's ``(record, (key, summary message JSON))``, or ``None`` (no entry)."""
        raise NotImplementedError

    def _archive(self, session_id: str) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
        """In one consistent read: the session's messages (as ``_all_rows``) and its
        archive, oldest entry first, each ``(record, summary row, archived rows)``, the
        archived rows keyed by their ``created_at``."""
        raise NotImplementedError

    def _jsonl_archive(self, session_id: str, decrypt: bool) -> list[tuple[str, Row, list[Row]]]:
        if not self._compaction_records(session_id):
            return []
        if self._encrypted is not None and not decrypt:  # as stored: ciphertext
            return list(self._encrypted.inner["_archive"](session_id)[1])
        return self._archive(session_id)[1]

    def _compaction_records(self, session_id: str) -> list[tuple[str, Row]]:
        """The session's archive entries' ``(record, summary row)``, oldest first. The
        default reads the whole archive; an engine may read less."""
        return [(record, summary) for record, summary, _ in self._archive(session_id)[1]]

    def _clear(self, session_id: str) -> None:
        """Delete the session's record and all its messages, atomically."""
        raise NotImplementedError

    def _lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take or renew the run lease for ``lease`` seconds, unless another owner's is live."""
        raise NotImplementedError

    def _unlock(self, session_id: str, owner: str) -> None:
        """Delete the run lease if ``owner`` holds it."""
        raise NotImplementedError

    def _lease_holder(self, session_id: str) -> LeaseHolder | None:
        """Who holds the run lease (``None``: nobody); see ``lease_holder``."""
        raise NotImplementedError

    def _lock_and_rows(
        self, session_id: str, owner: str, lease: float, count: int | None
    ) -> list[Row] | None:
        """``_lock``, then (if taken) ``_all_rows`` (``count`` None) or ``_newest_rows``;
        ``None`` if another owner holds the lease. A read that fails gives the lease back.
        An engine that can do both in one round trip overrides this."""
        if not self._lock(session_id, owner, lease):
            return None
        try:
            if count is None:
                return self._all_rows(session_id)
            return self._newest_rows(session_id, count)
        except BaseException:
            self._unlock(session_id, owner)
            raise

    def _append_and_unlock(
        self, session_id: str, owner: str, encoded: list[str], messages: list[Any]
    ) -> None:
        """``_append`` (when there is anything), then ``_unlock`` whatever happened. An
        engine that can do both in one round trip overrides this."""
        try:
            if encoded:
                self._append(session_id, encoded, messages)
        finally:
            self._unlock(session_id, owner)

    def _append_run_and_unlock(
        self,
        session_id: str,
        owner: str,
        encoded: list[str],
        messages: list[Any],
        run: RunRecord,
    ) -> None:
        """``_append_run``, then ``_unlock`` whatever happened. An engine that can do both
        in one round trip overrides this."""
        try:
            self._append_run(session_id, encoded, messages, run)
        finally:
            self._unlock(session_id, owner)

    def _sessions(
        self, wanted: dict[str, Any], after: tuple[float, Any] | None, limit: int | None
    ) -> list[tuple[SessionInfo, float, Any]]:
        """Sessions whose metadata holds ``wanted``, newest activity first, as
        ``(info, updated_at, tie-breaking key)``: strictly after the cursor position
        ``after`` (``(updated_at, key)``), at most ``limit`` (``None``: all)."""
        raise NotImplementedError

    def _info(self, session_id: str) -> SessionInfo | None:
        """The session's record, read in one step."""
        raise NotImplementedError

    def _put_metadata(self, session_id: str, text: str) -> None:
        """Store checked metadata JSON ``text``, creating the record if need be."""
        raise NotImplementedError

    def _update_metadata(
        self, session_id: str, changes: dict[str, Any], remove: list[str]
    ) -> dict[str, Any]:
        """Atomically merge checked ``changes`` in and delete ``remove`` (see
        ``merge_metadata``), creating the record if need be; return the result."""
        raise NotImplementedError

    def _search_supported(self) -> None:
        """Raise ``NotSupportedError`` (after ``StoreClosed``) if the engine cannot search."""

    def _search(
        self,
        query: str,
        session_id: str | None,
        limit: int,
        raw: bool,
        highlight: tuple[str, str],
    ) -> list[tuple[str, int, str, str, float]]:
        """``(session_id, position, message JSON text, snippet, rank)`` of the best hits;
        ``query`` (valid Unicode) has words. Raise ``ValueError`` naming a bad raw query."""
        self._search_supported()
        raise NotSupportedError(f"{type(self).__name__} has no full-text search")

    def _fork(self, session_id: str, new_session_id: str, at: int | None) -> int:
        """Copy messages 1..``at`` (all for ``None``) and the metadata into a session
        holding no messages; raise ``ValueError`` as ``fork`` documents."""
        raise NotImplementedError

    def _clock(self) -> float:
        """The clock every stored time comes from, in Unix seconds."""
        return time.time()

    def _prune(
        self,
        cutoff: float | None,
        keep_last: int | None,
        batch: int,
        dry_run: bool,
        progress: Progress | None,
    ) -> int:
        """Do (or with ``dry_run`` count) a checked prune: sessions last active before
        ``cutoff`` (by ``_clock``) go whole, then the others keep ``keep_last``."""
        raise NotImplementedError

    def _expire_idle(self, cutoff: float, batch: int) -> int:
        """Delete the sessions last active before ``cutoff``; return how many sessions."""
        raise NotImplementedError

    def _vacuum(self) -> None:
        """Give freed space back, as the engine can."""
        raise NotImplementedError
