"""A per-store cache of decoded session histories, for full reads of long sessions.

A full read (``get_messages(session_id)``, and a run's first read) of a session of n items
costs n row fetches and n JSON decodes, on every run. With the cache, a store keeps what
it decoded, as ``marshal`` bytes, and asks its engine only for the rows stored after them,
together with the session's *mark*: a value that every change other than an append
replaces (on SQLite, the session row's key and a generation counter that triggers bump on
every delete or update of one of its messages). The cached part is used only when the
mark is unchanged and the row count adds up; otherwise the read starts over from the
first row. So a read never returns what another thread or process has deleted or
replaced, and it returns every row committed before it began.

Every read gets new objects (``marshal.loads``, about twice as fast as decoding the JSON
again): a caller that changes the lists it got changes nothing cached.

Thread-safe. Bounded: at most ``limit`` bytes of marshalled histories per store, least
recently read sessions dropped first; a history bigger than a quarter of ``limit`` is
not kept.
"""

from __future__ import annotations

import marshal
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

__all__ = ("DEFAULT_LIMIT", "HistoryCache", "Kept", "Since")

#: Bytes of marshalled histories a store keeps by default (64 MiB).
DEFAULT_LIMIT = 64 * 2**20
#: Chunks of one history before they are merged into one (bounds the loads per read).
_MAX_CHUNKS = 8


class Since(NamedTuple):
    """What an engine read for a cached history: the session's mark and its new rows.

    ``mark`` is ``None`` when there is no such session. ``total`` is the number of rows
    the session holds now; ``rows`` are ``(seq, json_text)`` pairs with ``seq`` above the
    one asked for, oldest first.
    """

    mark: Hashable | None
    total: int
    rows: list[tuple[Any, str]]


class Kept(NamedTuple):
    mark: Hashable
    last: Any  # seq of the newest cached row
    rows: int  # rows decoded into the chunks (corrupt ones included, skipped)
    chunks: tuple[bytes, ...]
    size: int


class HistoryCache:
    """Decoded histories of one store, keyed by session id (see the module docstring).

    Args:
        limit: bytes of marshalled histories kept at most; must be more than 0.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Kept] = OrderedDict()
        self._size = 0
        #: Reads served from the cache (in part) and reads that started over, for tests.
        self.hits = 0
        self.misses = 0

    def get(self, session_id: str) -> Kept | None:
        """What is kept of the session; read rows after its ``last`` seq (0 if ``None``)."""
        with self._lock:
            return self._entries.get(session_id)

    def read(
        self,
        session_id: str,
        entry: Kept | None,
        since: Since,
        decode: Callable[[list[tuple[Any, str]]], list[dict[str, Any]]],
        full: Callable[[], Since],
    ) -> list[dict[str, Any]]:
        """The session's whole history, from what ``get`` returned and what followed it.

        Args:
            entry: what ``get(session_id)`` returned before the engine read.
            since: what the engine read after ``entry.last`` (after 0 if ``entry`` is None).
            decode: turns rows into messages (``decode_messages`` for the session).
            full: reads every row again (a ``Since`` after seq 0); called when the kept
                part no longer holds.
        """
        if entry is not None:
            if since.mark == entry.mark and entry.rows + len(since.rows) == since.total:
                self.hits += 1
                kept: list[dict[str, Any]] = []
                for chunk in entry.chunks:
                    kept += marshal.loads(chunk)
                if since.rows:
                    added = decode(since.rows)
                    self._keep(session_id, entry, since, added)
                    return kept + added
                with self._lock:
                    if session_id in self._entries:
                        self._entries.move_to_end(session_id)
                return kept
            since = full()  # changed since it was kept: start over
        self.misses += 1
        if since.mark is None:
            self.discard(session_id)
            return []
        messages = decode(since.rows)
        self._keep(session_id, None, since, messages)
        return messages

    def discard(self, session_id: str) -> None:
        """Forget the session's history (the next read starts from its first row)."""
        with self._lock:
            entry = self._entries.pop(session_id, None)
            if entry is not None:
                self._size -= entry.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    def _keep(
        self,
        session_id: str,
        entry: Kept | None,
        since: Since,
        added: list[dict[str, Any]],
    ) -> None:
        if not since.rows:
            chunks: tuple[bytes, ...] = () if entry is None else entry.chunks
            last = 0 if entry is None else entry.last
        else:
            new = marshal.dumps(added)
            chunks = (new,) if entry is None else (*entry.chunks, new)
            if len(chunks) > _MAX_CHUNKS:
                merged: list[Any] = []
                for chunk in chunks:
                    merged += marshal.loads(chunk)
                chunks = (marshal.dumps(merged),)
            last = since.rows[-1][0]
        size = sum(len(chunk) for chunk in chunks)
        with self._lock:
            old = self._entries.pop(session_id, None)
            if old is not None:
                self._size -= old.size
            if size * 4 > self.limit:
                return
            assert since.mark is not None
            self._entries[session_id] = Kept(since.mark, last, since.total, chunks, size)
            self._size += size
            while self._size > self.limit:
                _, dropped = self._entries.popitem(last=False)
                self._size -= dropped.size
