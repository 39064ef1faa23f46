"""RedisStore: the blocking session store on Redis (needs the ``redis`` extra).

Thread safety: one ``RedisStore`` may be shared by any number of threads; they share
the client's connection pool. Through ``fork()`` a child process may keep using it:
redis-py's pool notices the new process id and opens fresh connections (the parent's
sockets are never used by the child).

Atomicity: every operation on one session is one Lua script on that session's keys,
which share one hash tag (see ``stores.redis.core`` for the key layout), so it is atomic and
would touch a single slot of a Redis Cluster. Concurrent writers from any number of
processes never interleave within one ``add_messages`` batch. The sessions index (for listing by
last activity) is updated right after each session's own write, so it is eventually
consistent with the sessions; listings skip, and remove, entries whose session is gone.

Redis has no full-text index without the RediSearch module: ``search`` raises
``NotSupportedError``. Metadata filters scan the sessions (see ``list_sessions``);
``vacuum`` has nothing to do (Redis frees memory itself). See ``docs/redis.md``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..._extras import require
from ..._serialize import decode_messages, encode_messages
from ..._validate import check_limit, check_session_id
from ...exceptions import StoreBusy, StoreError
from ..base import check_count, check_ttl, is_user_message, newest_window
from .core import RETRIES, Scripts, split_item
from .history import RedisHistoryMixin
from .retention import RedisRetentionMixin

if TYPE_CHECKING:
    import redis
else:
    redis = require("redis", "redis", "RedisStore")

__all__ = ("RedisStore",)

#: Items ``rewind`` reads from the end at first; grown fourfold until a turn starts.
_REWIND_READ = 64


def _describe(client: redis.Redis) -> str:
    """Where ``client`` connects, for messages: host:port/db or a socket path, no password."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={db}"
    if "host" not in kwargs and hasattr(pool, "service_name"):  # a Sentinel-managed pool
        return f"sentinel service {pool.service_name}/{db}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


class RedisStore(RedisHistoryMixin, RedisRetentionMixin):
    """Session messages in Redis, the keys of each session under one hash tag.

    The store talks to one server (or a Sentinel-managed primary) through a
    ``redis.Redis`` client. Its keys are laid out for Redis Cluster (one slot per
    session, the sessions index a key of its own), but a ``RedisCluster`` client is
    not accepted yet: see ``docs/redis.md``.

    Args:
        url: a ``redis://``, ``rediss://`` or ``unix://`` URL; the store creates a
            client (with its own connection pool) and closes it in ``close()``. Or a
            ``redis.Redis`` client of your own, which the store uses and leaves open.
            Either ``decode_responses`` setting works.
        prefix: the start of every key the store writes (``<prefix>:...``); stores
            with different prefixes never see each other's sessions. No braces.
        ttl: each session expires this long after its last write: every write sets
            the expiry of all the session's keys again (``PEXPIRE``), and Redis
            deletes an idle session itself. Reads do not extend it.

    Raises:
        MissingDependencyError: the ``redis`` extra is not installed (when this module
            is imported).
        TypeError: ``url`` is neither a str nor a ``redis.Redis``; ``prefix`` is not a
            str; ``ttl`` is not a ``timedelta``.
        ValueError: ``url`` is not a Redis URL; ``prefix`` is empty or holds ``{`` or
            ``}``; ``ttl`` is not positive.
        StoreError: the server does not answer a ``PING`` (the message names the host,
            never a password; ``__cause__`` is the driver's error).
    """

    def __init__(
        self,
        url: str | redis.Redis,
        *,
        prefix: str = "agentsession",
        ttl: timedelta | None = None,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}: {prefix!r}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty str without braces, got {prefix!r}")
        if ttl is not None:
            check_ttl(ttl)
        self._closed = False
        self.prefix = prefix
        self.ttl = ttl
        self._ttl_ms = "0" if ttl is None else str(max(1, ttl // timedelta(milliseconds=1)))
        self._index_key = f"{prefix}:sessions"
        if isinstance(url, redis.Redis):
            self._client = url
            self._owns_client = False
        elif isinstance(url, str):
            try:
                self._client = redis.Redis.from_url(url)
            except ValueError as exc:
                raise ValueError(
                    f"url is not a redis://, rediss:// or unix:// URL: {exc}"
                ) from None
            self._owns_client = True
        else:
            raise TypeError(
                f"url must be a Redis URL (str) or a redis.Redis client, not {type(url).__name__}"
            )
        self._where = _describe(self._client)
        self._scripts = Scripts(self._client)
        try:
            with self._mapped():
                self._client.ping()
        except StoreError:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> redis.Redis:
        """The ``redis.Redis`` client the store uses."""
        return self._client

    def close(self) -> None:
        """Close the client the store created (not one passed in). Later calls raise
        ``StoreClosed``. Closing twice is allowed."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the Store API ---------------------------------------------------------------------

    def get_messages(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the session's newest ``limit`` messages (all if ``None``), oldest first.

        One ``LRANGE``: a consistent snapshot. A window (``limit`` set) is tool-safe (see
        ``agentsession.window``), so it may hold fewer than ``limit`` messages. A stored
        item that is not valid JSON is skipped with a warning on the ``agentsession``
        logger.

        Raises:
            TypeError, ValueError: a bad ``session_id`` or ``limit``.
            StoreClosed: the store is closed.
            StoreError: Redis failed or cannot be reached.
        """
        check_session_id(session_id)
        limit = check_limit(limit)
        if limit == 0:
            return []
        # With a limit, one item more: the item before the window tells whether the
        # window's first item lost its reasoning item (see window.tool_safe_tail).
        first = 0 if limit is None else -(limit + 1)
        with self._mapped():
            items = self._client.lrange(self._keys(session_id)[0], first, -1)
        rows = [(n, split_item(item)[1]) for n, item in enumerate(items, 1)]
        where = f"session {session_id!r}"
        if limit is None:
            return decode_messages(rows, where)
        return newest_window(rows[::-1], limit, where)

    def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        """Append ``messages`` to the session in one atomic script, keeping their order.

        Every message is encoded before Redis is called, so bad input stores nothing.
        The script appends them all, sets ``updated_at`` (and ``created_at`` for a new
        session) from the server's clock and, with a ``ttl``, the expiry of the
        session's keys; writers in other threads and processes never interleave with
        it. The sessions index is updated right after.

        Raises:
            TypeError: a message is not a JSON object or holds a value JSON cannot
                represent; the message names the item. Nothing is stored.
            ValueError: a bad ``session_id``.
            StoreBusy: Redis is loading its data set.
            StoreClosed: the store is closed.
            StoreError: Redis failed or cannot be reached. Nothing of this add is
                stored if the script did not run; if only the index update after it
                failed, the messages are stored and the session is listed again on
                its next write.
        """
        check_session_id(session_id)
        encoded = encode_messages(messages)
        if not encoded:
            return
        updated = self._run(self._scripts.add, session_id, self._ttl_ms, *encoded)
        self._indexed(session_id, updated)

    def pop_message(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return the session's newest message (``None`` if it has none).

        Atomic (one script). A newest item that is corrupt is removed too, and the next
        valid one returned.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        while True:
            reply = self._run(self._scripts.pop, session_id, self._ttl_ms)
            if reply is None:
                return None
            updated, item = reply
            self._indexed(session_id, updated)
            decoded = decode_messages([("newest", split_item(item)[1])], f"session {session_id!r}")
            if decoded:
                return decoded[0]

    def rewind(self, session_id: str, turns: int = 1) -> list[dict[str, Any]]:
        """Remove the session's last ``turns`` turns whole and return what was removed.

        A turn starts at a user message and runs to the next one, so tool calls, their
        outputs and the replies of a turn go with it. Fewer turns than asked for means
        the whole session is emptied. Atomic: the turns are found in a snapshot of the
        session's tail, then one script removes exactly those items if the tail is
        still the same (else the step is retried), so all of it happens or none of it.

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``turns`` not an int >= 1.
            StoreBusy: the session kept changing for 100 attempts; or as for
                ``add_messages``.
            StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        check_count(turns, "turns", minimum=1)
        where = f"session {session_id!r}"
        messages_key = self._keys(session_id)[0]
        wanted = _REWIND_READ
        for _ in range(RETRIES):
            with self._mapped():
                items = self._client.lrange(messages_key, -wanted, -1)
            start, found = None, 0
            for index in range(len(items) - 1, -1, -1):
                if is_user_message(decode_messages([(index, split_item(items[index])[1])], where)):
                    found += 1
                    if found == turns:
                        start = index
                        break
            if start is None and len(items) == wanted:
                wanted *= 4  # the turns may start further back: read more
                continue
            tail = items[start or 0 :]
            if not tail:
                return []
            whole = "1" if start is None else "0"
            updated = self._run(self._scripts.cut_tail, session_id, self._ttl_ms, whole, *tail)
            if updated is not None:
                self._indexed(session_id, updated)
                return decode_messages(
                    [(n, split_item(item)[1]) for n, item in enumerate(tail)], where
                )
        raise StoreBusy(f"session {session_id!r} kept changing while rewinding it")

    def truncate(self, session_id: str, keep: int) -> list[dict[str, Any]]:
        """Keep the session's oldest ``keep`` messages; remove and return the rest.

        This is what a failed run is rolled back with (see ``RunConfig``): the count
        taken before the run is passed back as ``keep``. Atomic (one script).

        Raises:
            TypeError, ValueError: a bad ``session_id``, or ``keep`` not an int >= 0.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        check_count(keep, "keep", minimum=0)
        reply = self._run(self._scripts.truncate, session_id, self._ttl_ms, keep)
        if reply is None:
            return []
        updated, *removed = reply
        self._indexed(session_id, updated)
        rows = [(keep + n, split_item(item)[1]) for n, item in enumerate(removed, 1)]
        return decode_messages(rows, f"session {session_id!r}")

    def message_count(self, session_id: str) -> int:
        """How many messages the session holds (0 for an unknown session): ``LLEN``.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreClosed, StoreError: as for ``get_messages``.
        """
        check_session_id(session_id)
        with self._mapped():
            return self._client.llen(self._keys(session_id)[0])

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        """Take the session's run lease for ``owner`` unless another live owner holds it.

        The lease is a key that Redis expires after ``lease`` seconds (its own clock)
        unless renewed by calling this again as the same owner, so a process that dies
        holding one blocks others only that long. Atomic (one script).

        Raises:
            TypeError: ``owner`` is not a str or ``lease`` not a number.
            ValueError: a bad ``session_id``, or ``lease`` not a positive finite number.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        if not isinstance(owner, str):
            raise TypeError(f"owner must be a str, not {type(owner).__name__}: {owner!r}")
        if isinstance(lease, bool) or not isinstance(lease, (int, float)):
            raise TypeError(f"lease must be a number of seconds, got {lease!r}")
        if not (math.isfinite(lease) and lease > 0):
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        milliseconds = max(1, math.ceil(lease * 1000))
        return bool(self._run(self._scripts.lock, session_id, owner, milliseconds))

    def unlock(self, session_id: str, owner: str) -> None:
        """Give the session's run lease back, if ``owner`` still holds it (atomic).

        Raises:
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        if not isinstance(owner, str):
            raise TypeError(f"owner must be a str, not {type(owner).__name__}: {owner!r}")
        self._run(self._scripts.unlock, session_id, owner)

    def clear_session(self, session_id: str) -> None:
        """Delete the session and all its messages (a no-op for an unknown session).

        The session's keys go in one step; its index entry right after. A run lease
        held on the session is left alone.

        Raises:
            TypeError, ValueError: a bad ``session_id``.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        check_session_id(session_id)
        self._run(self._scripts.clear, session_id)
        self._unindex([session_id])
