"""What every part of ``RedisStore`` shares: the key layout, errors, scripts and the index.

Key layout (``prefix`` defaults to ``"agentsession"``)::

    <prefix>:{<id>}:messages   LIST    "<created_at> <message JSON>", oldest first
    <prefix>:{<id>}:session    HASH    created_at, updated_at, metadata (JSON text)
    <prefix>:{<id>}:lock       STRING  the run lease's owner, expiring (PX)
    <prefix>:sessions          ZSET    session id -> updated_at: the sessions index
    <prefix>:encryption        STRING  present when the sessions are encrypted
    <prefix>:keys              HASH    session id -> wrapped data key (encrypted stores)

``<id>`` is the session id with ``%``, ``{`` and ``}`` percent-encoded (``%25``,
``%7B``, ``%7D``), so the text between the braces is the Redis Cluster hash tag: the
same for every key of one session (one slot, so one script can touch them all) and
different for different sessions. Times are Unix seconds from the Redis server's clock.

The index is a key of its own (another slot in a cluster). On one server an add
updates it in the same script as the session (one round trip); every other write
updates it right after the session's own write (as adds do in a Cluster), so it is
eventually consistent with the sessions: an entry may outlive its session (expired by
TTL, or deleted) until a listing skips it and removes it.

On a Redis Cluster (a ``redis.cluster.RedisCluster`` client) every script still runs
on one session's keys, so on the one node that owns its slot; what spans sessions is
split per key by the client (the pipelines of ``infos``, ``unindex`` and ``missing``
are sent to each node for the keys it owns).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..._extras import require
from ...exceptions import StoreBusy, StoreClosed, StoreError
from ...protocol import SessionInfo
from ..base import info_from_row
from . import compaction_scripts as compaction
from . import scripts as lua

if TYPE_CHECKING:
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import RedisCluster
    from redis.commands.core import Script
    from redis.retry import Retry
else:
    redis = require("redis", "redis", "RedisStore")
    from redis.backoff import NoBackoff
    from redis.cluster import RedisCluster
    from redis.retry import Retry

#: A client the store works with: one server (or a Sentinel-managed primary), or a Cluster.
Client: TypeAlias = "redis.Redis | RedisCluster"

__all__ = (
    "CLUSTER_PARAMETER",
    "PAGE",
    "PROBE_IDLE",
    "RETRIES",
    "Client",
    "Keyspace",
    "LeanPool",
    "Scripts",
    "chunks",
    "client_from_url",
    "cluster_url",
    "escape_id",
    "runs_key",
    "session_id_of_runs",
    "session_keys",
    "split_item",
    "storable_json",
    "text",
)

T = TypeVar("T")

#: Index entries read per round trip when walking the sessions index.
PAGE = 500

#: How often an optimistic step (``rewind``, ``update_metadata``) is tried while its
#: session keeps changing under it, before ``StoreBusy`` is raised.
RETRIES = 100


#: A pooled connection idle for longer than this (seconds) is checked before it is
#: handed out again (see ``LeanPool``).
PROBE_IDLE = 1.0
_RELEASED = "_agentsession_released"


class LeanPool(redis.ConnectionPool):
    """redis-py's ``ConnectionPool``, without the check of a connection in steady use.

    The stock pool probes every connection it hands out for unread data or a closed
    socket (a non-blocking ``recv``, which releases the GIL): one more system call per
    command, and with many threads each such release is a likely thread switch. Here
    only a connection idle for more than ``PROBE_IDLE`` seconds (or new) is probed, so
    one the server closed while it sat in the pool is still replaced before it is used.
    A connection used within the last second needs no probe: redis-py disconnects any
    connection whose command was interrupted (every error while sending or reading
    drops it), so a pooled connection never holds a stale reply. Thread safe, as the
    pool it extends.
    """

    def ensure_connection(self, connection: Any) -> None:
        released = getattr(connection, _RELEASED, None)
        if released is None or time.monotonic() - released > PROBE_IDLE:
            super().ensure_connection(connection)
        else:
            connection.connect()  # reconnects one that was dropped, else nothing

    def release(self, connection: Any) -> None:
        setattr(connection, _RELEASED, time.monotonic())
        super().release(connection)


#: The query parameter that makes a URL name a Redis Cluster: ``?cluster=true``.
CLUSTER_PARAMETER = "cluster"
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off", "")


def cluster_url(url: str) -> tuple[str, bool]:
    """``url`` without its ``cluster`` query parameter, and whether that said true.

    Raises:
        ValueError: the ``cluster`` parameter is neither true nor false.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    wanted = [value for key, value in query if key == CLUSTER_PARAMETER]
    if not wanted:
        return url, False
    flag = wanted[-1].lower()
    if flag not in _TRUE + _FALSE:
        raise ValueError(f"cluster must be true or false in a Redis URL, got {wanted[-1]!r}")
    rest = urlencode([(key, value) for key, value in query if key != CLUSTER_PARAMETER])
    return urlunsplit(parts._replace(query=rest)), flag in _TRUE


def client_from_url(url: str) -> Client:
    """A client for ``url``, closed with the client: on a ``LeanPool`` of its own, or
    (``?cluster=true``) a ``RedisCluster`` that finds the other nodes from this one.

    Neither sends a command again after a connection error (the single-server pool's
    default; the Cluster client's own default would, up to ten times): the command may
    have run before its reply was lost, and an add run twice would store its turn
    twice. The error is raised as ``StoreError``; the next call uses a fresh connection
    (and, on a Cluster, the refreshed slot map). MOVED, ASK and TRYAGAIN replies are
    redirections, not errors: the Cluster client follows them.

    Raises:
        ValueError: ``url`` is not a Redis URL (redis-py's message), or its ``cluster``
            parameter is not true or false.
        redis.RedisError: (a Cluster) no node of the cluster answers.
    """
    url, cluster = cluster_url(url)
    if cluster:
        return RedisCluster.from_url(url, retry=Retry(NoBackoff(), 0))
    client = redis.Redis(connection_pool=LeanPool.from_url(url))
    client.auto_close_connection_pool = True
    return client


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def escape_id(session_id: str) -> str:
    """``session_id`` with ``%``, ``{`` and ``}`` percent-encoded: a valid hash tag body."""
    return session_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def session_keys(prefix: str, session_id: str) -> list[str]:
    """The session's keys, in the order every script takes them: messages, session, lock."""
    tag = f"{prefix}:{{{escape_id(session_id)}}}"
    return [f"{tag}:messages", f"{tag}:session", f"{tag}:lock"]


def runs_key(prefix: str, session_id: str) -> str:
    """The session's usage ledger key (the scripts' ``KEYS[4]``)."""
    return f"{prefix}:{{{escape_id(session_id)}}}:runs"


_UNESCAPE = re.compile("%(25|7B|7D)")
_UNESCAPED = {"25": "%", "7B": "{", "7D": "}"}


def session_id_of_runs(prefix: str, key: bytes | str) -> str | None:
    """The session id of a ``runs_key`` (``None`` for another key)."""
    name = text(key)
    head, tail = f"{prefix}:{{", "}:runs"
    if not (name.startswith(head) and name.endswith(tail)):
        return None
    return _UNESCAPE.sub(lambda m: _UNESCAPED[m.group(1)], name[len(head) : -len(tail)])


def text(value: bytes | str) -> str:
    """A reply as text (clients made with ``decode_responses=True`` return ``str``)."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def storable_json(encoded: str) -> str:
    """JSON text Redis can hold as UTF-8: lone surrogates, if any, as ``\\u`` escapes."""
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(json.loads(encoded), ensure_ascii=True, separators=(",", ":"))
    return encoded


def split_item(item: bytes | str) -> tuple[float, str]:
    """``(created_at, message JSON text)`` of a stored list item."""
    stamp, _, message = text(item).partition(" ")
    try:
        return float(stamp), message
    except ValueError:
        return 0.0, text(item)


class Info(NamedTuple):
    """One session's record, as the ``INFO`` script reads it in one step."""

    created_at: float
    updated_at: float
    metadata: str
    messages: int
    leased: bool

    @classmethod
    def parse(cls, reply: list[Any]) -> Info:
        created, updated, metadata, count, leased = reply
        return cls(
            float(created) if created is not None else float(updated),
            float(updated),
            "{}" if metadata is None else text(metadata),
            int(count),
            bool(leased),
        )

    def session_info(self, session_id: str) -> SessionInfo:
        return info_from_row(
            (session_id, self.messages, self.created_at, self.updated_at, self.metadata)
        )


class Scripts:
    """The store's Lua scripts, registered on its client (EVALSHA, loaded on demand)."""

    def __init__(self, client: Client) -> None:
        self.add: Script = client.register_script(lua.ADD)
        self.add_run: Script = client.register_script(lua.ADD_RUN)
        self.pop: Script = client.register_script(lua.POP)
        self.cut_tail: Script = client.register_script(lua.CUT_TAIL)
        self.truncate: Script = client.register_script(lua.TRUNCATE)
        self.clear: Script = client.register_script(lua.CLEAR)
        self.lock: Script = client.register_script(lua.LOCK)
        self.lock_read: Script = client.register_script(lua.LOCK_READ)
        self.add_unlock: Script = client.register_script(lua.ADD_UNLOCK)
        self.unlock: Script = client.register_script(lua.UNLOCK)
        self.info: Script = client.register_script(lua.INFO)
        self.snapshot: Script = client.register_script(lua.SNAPSHOT)
        self.fork_into: Script = client.register_script(lua.FORK_INTO)
        self.import_: Script = client.register_script(lua.IMPORT)
        self.put_metadata: Script = client.register_script(lua.PUT_METADATA)
        self.drop_idle: Script = client.register_script(lua.DROP_IDLE)
        self.trim: Script = client.register_script(lua.TRIM)
        self.compact: Script = client.register_script(compaction.COMPACT)
        self.uncompact: Script = client.register_script(compaction.UNCOMPACT)
        self.archive: Script = client.register_script(compaction.ARCHIVE)
        self.restore: Script = client.register_script(compaction.RESTORE)
        self.records: Script = client.register_script(compaction.RECORDS)


class Keyspace:
    """One store's keys on one client: the scripts, the sessions index and error mapping.

    What ``RedisStore`` and the functions of ``history``, ``retention`` and ``jsonl``
    share. Every helper maps the driver's errors (see ``mapped``) and raises
    ``StoreClosed`` once ``closed`` is set.
    """

    def __init__(self, client: Client, prefix: str, ttl_ms: str, where: str) -> None:
        self.client = client
        self.prefix = prefix
        #: The sessions' expiry in milliseconds, as the scripts take it ("0": none).
        self.ttl_ms = ttl_ms
        self.where = where
        self.index_key = f"{prefix}:sessions"
        #: Whether every key is on one server, so a script may touch the index with a
        #: session's keys (not on a Cluster, where the index is in a slot of its own).
        self.one_server = not isinstance(client, RedisCluster)
        self.scripts = Scripts(client)
        self.closed = False
        self.name = where

    # -- errors ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def mapped(self) -> Iterator[None]:
        """Raise ``StoreClosed`` if closed; map the driver's errors to ``StoreError``s."""
        self.check_open()
        try:
            yield
        except redis.exceptions.BusyLoadingError as exc:
            raise StoreBusy(f"Redis at {self.where} is still loading its data: {exc}") from exc
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            if self.closed:
                raise StoreClosed(f"{self.name} is closed") from exc
            raise StoreError(f"cannot reach Redis at {self.where}: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"Redis at {self.where}: {exc}") from exc
        except redis.exceptions.RedisClusterException as exc:  # no node covers a slot
            raise StoreError(f"Redis Cluster at {self.where}: {exc}") from exc

    def check_open(self) -> None:
        """Raise ``StoreClosed`` if the store is closed."""
        if self.closed:
            raise StoreClosed(f"{self.name} is closed")

    # -- one session -----------------------------------------------------------------------

    def keys(self, session_id: str) -> list[str]:
        return session_keys(self.prefix, session_id)

    def run(self, script: Script, session_id: str, *args: Any) -> Any:
        """Run one of the store's scripts on the session's keys: one atomic step."""
        with self.mapped():
            return script(keys=self.keys(session_id), args=args)

    def ledger_keys(self, session_id: str) -> list[str]:
        """The session's keys with its runs key: what the ledger's scripts take."""
        return [*self.keys(session_id), runs_key(self.prefix, session_id)]

    def run_ledger(self, script: Script, session_id: str, *args: Any) -> Any:
        """Run a script that takes the runs key too (``ledger_keys``): one atomic step."""
        with self.mapped():
            return script(keys=self.ledger_keys(session_id), args=args)

    def append_run(
        self, session_id: str, encoded: Sequence[str], run: str, owner: str = ""
    ) -> None:
        """``append``, with a run record JSON text pushed onto the session's ledger in the
        same script (``encoded`` may be empty: then only the record is written), and
        ``owner``'s run lease given back (``""``: none)."""
        keys = self.ledger_keys(session_id)
        if self.one_server and encoded:
            keys.append(self.index_key)
        with self.mapped():
            updated = self.scripts.add_run(
                keys=keys, args=(self.ttl_ms, session_id, run, owner, *encoded)
            )
        if updated is not None and not self.one_server:
            self.indexed(session_id, updated)

    def append(self, session_id: str, encoded: Sequence[str]) -> None:
        """Append message JSON texts to the session and index it: one atomic step.

        On one server the ``ADD`` script updates the sessions index itself (one round
        trip, and the index never lags behind an add). In a Cluster the index lives in
        another slot, so it is updated right after, as every other write does: if only
        that fails, the messages are stored and the session is listed again on its next
        write.
        """
        keys = self.keys(session_id)
        if self.one_server:
            keys.append(self.index_key)
        with self.mapped():
            updated = self.scripts.add(keys=keys, args=(self.ttl_ms, session_id, *encoded))
        if not self.one_server:
            self.indexed(session_id, updated)

    def append_and_unlock(self, session_id: str, owner: str, encoded: Sequence[str]) -> None:
        """``append``, then give ``owner``'s run lease back: one atomic step."""
        keys = self.keys(session_id)
        if self.one_server:
            keys.append(self.index_key)
        with self.mapped():
            updated = self.scripts.add_unlock(
                keys=keys, args=(self.ttl_ms, session_id, owner, *encoded)
            )
        if not self.one_server:
            self.indexed(session_id, updated)

    def infos(self, session_ids: Sequence[str]) -> list[Info | None]:
        """Each session's record (``None`` if it has none), read in one round trip."""
        if not session_ids:
            return []
        with self.mapped():
            try:
                replies = self._infos(session_ids)
            except redis.exceptions.NoScriptError:
                # A Cluster's pipeline sends EVALSHA only: a node that has not seen the
                # script yet (new, restarted, or given slots) gets it, then all again.
                self.client.script_load(lua.INFO)
                replies = self._infos(session_ids)
        return [None if reply is None else Info.parse(reply) for reply in replies]

    def _infos(self, session_ids: Sequence[str]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for session_id in session_ids:
            self.scripts.info(keys=self.keys(session_id), client=pipe)
        return list(pipe.execute())

    def server_time(self) -> float:
        """The Redis server's clock, in Unix seconds (what every stored time is read from)."""
        with self.mapped():
            seconds, micros = self.client.time()
        return seconds + micros / 1_000_000

    # -- the sessions index ----------------------------------------------------------------

    def indexed(self, session_id: str, updated_at: bytes | str, *, exact: bool = False) -> None:
        """Record the session's new ``updated_at`` in the index (after its own write).

        Scores only grow (``ZADD GT``), so two writers whose index updates arrive out
        of order leave the newer time; ``exact`` sets it as is (an imported session).
        """
        with self.mapped():
            self.client.zadd(self.index_key, {session_id: updated_at}, gt=not exact)

    def unindex(self, session_ids: Sequence[str]) -> None:
        """Remove index entries, then put back any whose session was written meanwhile.

        A session re-created between its deletion and this removal keeps its entry:
        its writer's own ``ZADD`` comes after its script, and this check after the
        ``ZREM``, so one of the two always sees the other.
        """
        if not session_ids:
            return
        with self.mapped():
            self.client.zrem(self.index_key, *session_ids)
            pipe = self.client.pipeline(transaction=False)
            for session_id in session_ids:
                pipe.hget(self.keys(session_id)[1], "updated_at")
            found = pipe.execute()
            back = {
                sid: updated
                for sid, updated in zip(session_ids, found, strict=True)
                if updated is not None
            }
            if back:
                self.client.zadd(self.index_key, back, gt=True)

    def range(self, start: str, end: str, descending: bool, count: int | None) -> list[Any]:
        """Index entries ``(member, score)`` with scores from ``start`` to ``end``."""
        with self.mapped():
            return self.client.zrange(
                self.index_key,
                start,
                end,
                desc=descending,
                byscore=True,
                withscores=True,
                offset=None if count is None else 0,
                num=count,
            )

    def walk(
        self,
        *,
        descending: bool,
        after: tuple[float, str] | None = None,
        below: float | None = None,
        page: int = PAGE,
    ) -> Iterator[tuple[str, float]]:
        """Index entries ``(session_id, updated_at)`` in ``(updated_at, id)`` order.

        Keyset paging: each page starts from the last entry returned, so entries removed
        or moved while walking (sessions deleted, or active again) never make it skip or
        repeat the others. A session written meanwhile moves past the walk's end (or
        behind its start) and is not returned again.

        Args:
            descending: newest first (else oldest first).
            after: start strictly after this ``(updated_at, session_id)``.
            below: (oldest first only) stop before this ``updated_at``.
            page: index entries read per round trip.
        """
        start = ("+inf" if descending else "-inf") if after is None else repr(after[0])
        end = "-inf" if descending else ("+inf" if below is None else f"({below!r}")
        while True:
            batch = self.range(start, end, descending, page)
            fresh: list[tuple[float, str]] = []
            for member, score in batch:
                key = (score, text(member))
                if after is None or (key < after if descending else key > after):
                    fresh.append(key)
            if len(batch) == page and not fresh and after is not None:
                # A page or more of sessions share one updated_at: take all of them at once.
                tied = self.range(start, start, descending, None)
                for member, score in tied:
                    key = (score, text(member))
                    if key < after if descending else key > after:
                        yield key[1], key[0]
                start = f"({after[0]!r}"
                continue
            for key in fresh:
                yield key[1], key[0]
                after = key
            if len(batch) < page or after is None:
                return
            start = repr(after[0])
