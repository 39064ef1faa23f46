"""RedisStore: the blocking session store on Redis (needs the ``redis`` extra).

Thread safety: one ``RedisStore`` may be shared by any number of threads; they share
the client's connection pool. Through ``fork()`` a child process may keep using it:
redis-py's pool notices the new process id and opens fresh connections (the parent's
sockets are never used by the child).

Atomicity: every operation on one session is one Lua script on that session's keys,
which share one hash tag (see ``stores.redis.core`` for the key layout), so it is atomic and
touches a single slot of a Redis Cluster (it runs on the node that owns the session).
Concurrent writers from any number of processes never interleave within one
``add_messages`` batch. The sessions index (for listing by
last activity) is updated by the add's own script (one round trip per add), and right
after the session's own write for the other writes, so it is eventually consistent
with the sessions; listings skip, and remove, entries whose session is gone.

Redis has no full-text index without the RediSearch module: ``search`` raises
``NotSupportedError``. Metadata filters scan the sessions (see ``list_sessions``);
``vacuum`` has nothing to do (Redis frees memory itself). See ``docs/redis.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..._extras import require
from ...encryption import Encryption
from ...exceptions import NotSupportedError, SchemaError, StoreBusy, StoreError
from ...protocol import KeyStore, LeaseHolder, RunRecord, SessionInfo, SessionUsage
from .. import runs
from ..base import Progress, Row, StoreBase
from ..holders import holder_of_owner
from ..jsonl import ImportedSession
from . import compaction, history, jsonl, ledger, retention
from .core import RETRIES, Client, Keyspace, client_from_url, split_item, storable_json
from .keys import RedisKeyHash

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster
else:
    redis = require("redis", "redis", "RedisStore")
    from redis.cluster import RedisCluster

__all__ = ("RedisStore",)

#: Items ``rewind`` reads from the end at first; grown fourfold until a turn starts.
_REWIND_READ = 64


def _describe(client: Client) -> str:
    """Where ``client`` connects, for messages: ``redis://user:***@host:port/db``, a
    socket path or the cluster's nodes; a password is masked as ``***``."""
    if isinstance(client, RedisCluster):
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        nodes = sorted({node.name for node in primaries}) or ["no node"]
        return "cluster " + ",".join(nodes)
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={db}"
    if "host" not in kwargs and hasattr(pool, "service_name"):  # a Sentinel-managed pool
        return f"sentinel service {pool.service_name}/{db}"
    user, password = kwargs.get("username"), kwargs.get("password")
    auth = f"{user or ''}{':***' if password else ''}@" if user or password else ""
    return f"redis://{auth}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def _cluster_where(url: str) -> str:
    """The host:port of a URL, for a message (never its password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


class RedisStore(StoreBase):
    """Session messages in Redis, the keys of each session under one hash tag.

    The public methods are ``StoreBase``'s; here are the Redis specifics. Every atomic
    step is one Lua script on one session's keys; ``rewind`` and ``update_metadata`` are
    optimistic (a snapshot, then a script that applies only if nothing changed, retried
    up to 100 times before ``StoreBusy``). ``search`` raises ``NotSupportedError`` (after
    checking its arguments). Listing and pruning walk the sessions index; a metadata
    filter scans the sessions' records. ``prune`` steps are one script on one session,
    and report ``progress`` every ``batch`` messages and once at the end. ``vacuum`` has
    nothing to do. Stored times come from the Redis server's clock.

    The store talks to one server (or a Sentinel-managed primary) through a
    ``redis.Redis`` client, or to a Redis Cluster through a ``RedisCluster`` client: each
    session lives in one slot (its keys share a hash tag), the sessions index is a key
    of its own, and whatever spans sessions (listing, prune, export) reads the index and
    then each session on its own node. See ``docs/redis.md``.

    Args:
        url: a ``redis://``, ``rediss://`` or ``unix://`` URL (add ``?cluster=true``
            for a Redis Cluster, naming any of its nodes); the store creates a client
            (with its own connection pool) and closes it in ``close()``. Or a
            ``redis.Redis`` or ``redis.cluster.RedisCluster`` client of your own,
            which the store uses and leaves open. Either ``decode_responses`` setting
            works.
        prefix: the start of every key the store writes (``<prefix>:...``); stores
            with different prefixes never see each other's sessions. No braces.
        ttl: each session expires this long after its last write: every write sets
            the expiry of all the session's keys again (``PEXPIRE``), and Redis
            deletes an idle session itself. Reads do not extend it.
        encryption: encrypt messages and metadata values (an ``Encryption``; see
            ``docs/encryption.md``). The wrapped data keys go to the hash
            ``<prefix>:keys`` unless the ``Encryption`` names a key store (a
            ``RedisKeyHash`` on another server, say); ``<prefix>:encryption`` marks
            the keyspace as encrypted.

    Raises:
        MissingDependencyError: the ``redis`` extra is not installed (when this module
            is imported).
        TypeError: ``url`` is neither a str nor a ``redis.Redis`` / ``RedisCluster``;
            ``prefix`` is not a str; ``ttl`` is not a ``timedelta``.
        ValueError: ``url`` is not a Redis URL, or its ``cluster`` parameter is not
            true or false; ``prefix`` is empty or holds ``{`` or ``}``; ``ttl`` is not
            positive.
        StoreError: the server (every node of a Cluster) does not answer (the message
            names the host, never a password; ``__cause__`` is the driver's error).
        SchemaError: the keyspace is encrypted and ``encryption`` is not given, or it
            holds plaintext sessions and it is.
    """

    def __init__(
        self,
        url: str | Client,
        *,
        prefix: str = "agentsession",
        ttl: timedelta | None = None,
        encryption: Encryption | None = None,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}: {prefix!r}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty str without braces, got {prefix!r}")
        self._set_ttl(ttl)
        self.prefix = prefix
        ttl_ms = "0" if ttl is None else str(max(1, ttl // timedelta(milliseconds=1)))
        self._client: Client
        if isinstance(url, (redis.Redis, RedisCluster)):
            self._client = url
            self._owns_client = False
        elif isinstance(url, str):
            try:
                self._client = client_from_url(url)
            except ValueError as exc:
                raise ValueError(
                    f"url is not a redis://, rediss:// or unix:// URL: {exc}"
                ) from None
            except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
                where = _cluster_where(url)
                raise StoreError(f"cannot reach the Redis Cluster at {where}: {exc}") from exc
            self._owns_client = True
        else:
            raise TypeError(
                "url must be a Redis URL (str) or a redis.Redis or redis.cluster.RedisCluster "
                f"client, not {type(url).__name__}"
            )
        self._keyspace = Keyspace(self._client, prefix, ttl_ms, _describe(self._client))
        self._keyspace.name = repr(self)
        try:
            self._set_encryption(encryption, self._default_key_store, repr(self))
        except BaseException:
            self.close()
            raise

    def _default_key_store(self) -> KeyStore:
        return RedisKeyHash(self._client, key=f"{self.prefix}:keys")

    def _check_encrypted(self, encrypted: bool) -> None:
        # One round trip on a plain store (it is the one that checks the server answers).
        marker = f"{self.prefix}:encryption"
        with self._keyspace.mapped():
            if isinstance(self._client, RedisCluster):
                self._client.ping()  # every node answers (the GET reaches one)
            marked = self._client.get(marker) is not None
            if marked and not encrypted:
                raise SchemaError(f"{self!r} is encrypted: open it with encryption=Encryption(key)")
            if encrypted and not marked:
                if self._client.zcard(self._keyspace.index_key):
                    raise SchemaError(
                        f"{self!r} holds sessions stored in plaintext: it cannot be opened "
                        "with encryption= (export it, then import the file into a new "
                        "prefix opened with encryption=)"
                    )
                self._client.set(marker, "1", nx=True)

    def __repr__(self) -> str:
        return f"RedisStore({_describe(self._client)!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Client:
        """The ``redis.Redis`` or ``RedisCluster`` client the store uses."""
        return self._client

    def close(self) -> None:
        """Close the client the store created (not one passed in). Later calls raise
        ``StoreClosed``. Closing twice is allowed."""
        if self._keyspace.closed:
            return
        self._keyspace.closed = True
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the hooks of StoreBase: messages ----------------------------------------------------

    #: The run lease is a key that Redis expires (its own clock), set by a script.
    lease_blocks = True
    lease_expires = True
    _cursor_key = str

    def _clock(self) -> float:
        return self._keyspace.server_time()

    def _expire(self, ttl: timedelta) -> None:
        # Nothing to do: every write set the expiry of its session's keys (PEXPIRE), and
        # Redis deletes an idle session by itself.
        return None

    def _rows(self, session_id: str, first: int) -> list[Row]:
        ks = self._keyspace
        with ks.mapped():
            items = ks.client.lrange(ks.keys(session_id)[0], first, -1)
        return [(n, split_item(item)[1]) for n, item in enumerate(items, 1)]

    def _all_rows(self, session_id: str) -> list[Row]:
        return self._rows(session_id, 0)  # one LRANGE: a consistent snapshot

    def _newest_rows(self, session_id: str, count: int) -> list[Row]:
        return self._rows(session_id, -count)[::-1]

    def _append(self, session_id: str, encoded: list[str], messages: list[Any]) -> None:
        # One script appends them all, sets updated_at (and created_at for a new
        # session) from the server's clock, with a ttl the expiry of the session's keys,
        # and the session's index entry: one round trip (see ``Keyspace.append``).
        self._keyspace.append(session_id, encoded)

    def _append_run(
        self, session_id: str, encoded: list[str], messages: list[Any], run: RunRecord
    ) -> None:
        # The same script pushes the run's record onto the session's ledger: still one
        # round trip per run.
        self._keyspace.append_run(session_id, encoded, storable_json(runs.to_json(run)))

    def _usage(self, session_id: str) -> SessionUsage:
        return ledger.usage(self._keyspace, session_id)

    def _runs(self, session_id: str, limit: int) -> list[RunRecord]:
        return ledger.runs(self._keyspace, session_id, limit)

    def _usage_by_session(self, limit: int | None) -> list[tuple[str, SessionUsage]]:
        return ledger.usage_by_session(self._keyspace, limit)

    def _pop(self, session_id: str) -> Row | None:
        ks = self._keyspace
        reply = ks.run(ks.scripts.pop, session_id, ks.ttl_ms)
        if reply is None:
            return None
        updated, item = reply
        ks.indexed(session_id, updated)
        return "newest", split_item(item)[1]

    def _cut_turns(self, session_id: str, turns_start: Callable[[Iterable[Row]], Any]) -> list[Row]:
        # The turns are found in a snapshot of the session's tail, then one script
        # removes exactly those items if the tail is still the same (else the step is
        # retried), so all of it happens or none of it.
        ks = self._keyspace
        messages_key = ks.keys(session_id)[0]
        wanted = _REWIND_READ
        for _ in range(RETRIES):
            with ks.mapped():
                items = ks.client.lrange(messages_key, -wanted, -1)
            newest_first = (
                (index, split_item(items[index])[1]) for index in range(len(items) - 1, -1, -1)
            )
            start = turns_start(newest_first)
            if start is None and len(items) == wanted:
                wanted *= 4  # the turns may start further back: read more
                continue
            tail = items[start or 0 :]
            if not tail:
                return []
            whole = "1" if start is None else "0"
            updated = ks.run(ks.scripts.cut_tail, session_id, ks.ttl_ms, whole, *tail)
            if updated is not None:
                ks.indexed(session_id, updated)
                return [(n, split_item(item)[1]) for n, item in enumerate(tail)]
        raise StoreBusy(f"session {session_id!r} kept changing while rewinding it")

    def _cut(self, session_id: str, keep: int) -> list[Row]:
        ks = self._keyspace
        reply = ks.run(ks.scripts.truncate, session_id, ks.ttl_ms, keep)
        if reply is None:
            return []
        updated, *removed = reply
        ks.indexed(session_id, updated)
        return [(keep + n, split_item(item)[1]) for n, item in enumerate(removed, 1)]

    def _count(self, session_id: str) -> int:
        ks = self._keyspace
        with ks.mapped():
            return int(ks.client.llen(ks.keys(session_id)[0]))

    def _clear(self, session_id: str) -> None:
        # The session's keys go in one step (a run lease is left alone); its index
        # entry right after.
        ks = self._keyspace
        ks.run_ledger(ks.scripts.clear, session_id)
        ks.unindex([session_id])

    def _compact(self, session_id: str, cut: int, summary: str, record: str) -> None:
        compaction.compact(self._keyspace, session_id, cut, storable_json(summary), record)

    def _uncompact(self, session_id: str) -> tuple[str, Row] | None:
        return compaction.uncompact(self._keyspace, session_id)

    def _archive(self, session_id: str) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
        return compaction.archive(self._keyspace, session_id)

    def _compaction_records(self, session_id: str) -> list[tuple[str, Row]]:
        return compaction.records(self._keyspace, session_id)

    def _lock(self, session_id: str, owner: str, lease: float) -> bool:
        ks = self._keyspace
        milliseconds = max(1, math.ceil(lease * 1000))
        return bool(ks.run(ks.scripts.lock, session_id, owner, milliseconds))

    def _unlock(self, session_id: str, owner: str) -> None:
        ks = self._keyspace
        ks.run(ks.scripts.unlock, session_id, owner)

    def _lease_holder(self, session_id: str) -> LeaseHolder | None:
        # The lease's value is its owner, "<host>:<pid>:..." for agentsession's runs.
        ks = self._keyspace
        with ks.mapped():
            owner = ks.client.get(ks.keys(session_id)[2])
        if owner is None:
            return None
        if isinstance(owner, bytes):
            owner = owner.decode("utf-8", "replace")
        return holder_of_owner(owner)

    def _lock_and_rows(
        self, session_id: str, owner: str, lease: float, count: int | None
    ) -> list[Row] | None:
        # One script takes the lease and reads: one round trip at a run's start.
        ks = self._keyspace
        milliseconds = max(1, math.ceil(lease * 1000))
        first = 0 if count is None else -count
        reply = ks.run(ks.scripts.lock_read, session_id, owner, milliseconds, first)
        if not reply[0]:
            return None
        rows = [(n, split_item(item)[1]) for n, item in enumerate(reply[1], 1)]
        return rows if count is None else rows[::-1]

    def _append_and_unlock(
        self, session_id: str, owner: str, encoded: list[str], messages: list[Any]
    ) -> None:
        # One script appends and gives the lease back: one round trip at a run's end.
        if not encoded:
            self._unlock(session_id, owner)
            return
        try:
            self._keyspace.append_and_unlock(session_id, owner, encoded)
        except BaseException:
            # The script did nothing (or its reply was lost): make sure the lease goes.
            self._unlock(session_id, owner)
            raise

    def _append_run_and_unlock(
        self,
        session_id: str,
        owner: str,
        encoded: list[str],
        messages: list[Any],
        run: RunRecord,
    ) -> None:
        # One script records the run, appends and gives the lease back: still one round
        # trip at a run's end.
        record = storable_json(runs.to_json(run))
        try:
            self._keyspace.append_run(session_id, encoded, record, owner)
        except BaseException:
            # The script did nothing (or its reply was lost): make sure the lease goes.
            self._unlock(session_id, owner)
            raise

    # -- the hooks of StoreBase: history (the work is in ``history``) ------------------------

    def _sessions(
        self, wanted: dict[str, Any], after: tuple[float, Any] | None, limit: int | None
    ) -> list[tuple[SessionInfo, float, Any]]:
        return list(history.sessions(self._keyspace, wanted, after, limit))

    def _info(self, session_id: str) -> SessionInfo | None:
        (info,) = self._keyspace.infos([session_id])  # one script: one consistent step
        return None if info is None else info.session_info(session_id)

    def _put_metadata(self, session_id: str, text: str) -> None:
        history.put_metadata(self._keyspace, session_id, text)

    def _update_metadata(
        self, session_id: str, changes: dict[str, Any], remove: list[str]
    ) -> dict[str, Any]:
        return history.update_metadata(self._keyspace, session_id, changes, remove)

    def _search_supported(self) -> None:
        self._keyspace.check_open()
        raise NotSupportedError(
            "RedisStore has no full-text search: Redis offers no full-text index without "
            "the RediSearch module. Use SQLiteStore or PostgresStore for search(), or "
            "export_jsonl() the sessions into one of them."
        )

    def _fork(self, session_id: str, new_session_id: str, at: int | None) -> int:
        return history.fork(self._keyspace, session_id, new_session_id, at)

    # -- the hooks of StoreBase: retention (the work is in ``retention``) --------------------

    def _prune(
        self,
        cutoff: float | None,
        keep_last: int | None,
        batch: int,
        dry_run: bool,
        progress: Progress | None,
    ) -> int:
        ks = self._keyspace
        if dry_run:
            return retention.count(ks, cutoff, keep_last)
        meter = retention.Meter(batch, progress)
        if cutoff is not None:
            retention.drop_idle(ks, cutoff, meter)
        if keep_last is not None:
            retention.trim_all(ks, keep_last, meter)
        meter.flush()
        return meter.total

    def _expire_idle(self, cutoff: float, batch: int) -> int:
        return retention.drop_idle(self._keyspace, cutoff, retention.Meter(batch, None))

    def _vacuum(self) -> None:
        # Nothing to do: Redis gives the memory of deleted keys back by itself.
        self._keyspace.check_open()

    # -- the hooks of JsonlMixin (the work is in ``jsonl``) ----------------------------------

    def _jsonl_session_ids(self) -> Iterator[str]:
        return jsonl.session_ids(self._keyspace)

    def _jsonl_missing(self, session_ids: list[str]) -> list[str]:
        return jsonl.missing(self._keyspace, session_ids)

    def _jsonl_export_one(self, session_id: str, fp: IO[str]) -> bool:
        return jsonl.export_one(self._keyspace, session_id, fp)

    def _jsonl_store(self, session: ImportedSession, on_conflict: str) -> bool:
        return jsonl.store_session(self._keyspace, session, on_conflict)
