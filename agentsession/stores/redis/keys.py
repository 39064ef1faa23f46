"""``RedisKeyHash``: wrapped data keys in one Redis hash.

An encrypted ``RedisStore`` keeps them in the hash ``<prefix>:keys`` on its own server
by default. To keep them elsewhere (another server or database number, with its own
persistence and backups), pass ``Encryption(key, key_store=RedisKeyHash(url))``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..._extras import require
from ...exceptions import StoreClosed, StoreError
from .core import Client, client_from_url, text

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster
else:
    redis = require("redis", "redis", "RedisKeyHash")
    from redis.cluster import RedisCluster

__all__ = ("RedisKeyHash",)

# Compare-and-set of one field: rotation never overwrites a record changed meanwhile.
_REPLACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
    return 1
end
return 0
"""


class RedisKeyHash:
    """A ``protocol.KeyStore`` in one Redis hash: session id -> wrapped data key.

    Args:
        url: the server (a ``redis://``, ``rediss://`` or ``unix://`` URL), or a
            ``redis.Redis`` or ``RedisCluster`` client (not closed by ``close``).
        key: the hash's key.

    Raises:
        TypeError, ValueError: a bad ``url`` or ``key``.

    Thread safety: every method may be called from any thread (redis-py's pool).
    Keep the server persistent (AOF or RDB): a lost record is a lost session.
    """

    def __init__(self, url: str | Client, *, key: str = "agentsession:keys") -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        if isinstance(url, (redis.Redis, RedisCluster)):
            self._client, self._owns = url, False
        elif isinstance(url, str):
            try:
                self._client, self._owns = client_from_url(url), True
            except ValueError as exc:
                raise ValueError(
                    f"url is not a redis://, rediss:// or unix:// URL: {exc}"
                ) from None
        else:
            raise TypeError(f"url must be a Redis URL or client, not {type(url).__name__}")
        self.key = key
        self._closed = False
        self._replace = self._client.register_script(_REPLACE)

    def __repr__(self) -> str:
        return f"RedisKeyHash(key={self.key!r})"

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        try:
            yield
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"key hash {self.key!r}: {exc}") from exc

    def get(self, session_ids: list[str]) -> dict[str, str]:
        if not session_ids:
            return {}
        with self._mapped():
            values = self._client.hmget(self.key, session_ids)
        return {
            sid: text(value)
            for sid, value in zip(session_ids, values, strict=True)
            if value is not None
        }

    def add(self, session_id: str, record: str) -> str:
        with self._mapped():
            pipe = self._client.pipeline(transaction=True)
            pipe.hsetnx(self.key, session_id, record)
            pipe.hget(self.key, session_id)
            _, stored = pipe.execute()
        return text(stored)

    def replace(self, session_id: str, old: str, new: str) -> bool:
        with self._mapped():
            return bool(self._replace(keys=[self.key], args=[session_id, old, new]))

    def delete(self, session_id: str) -> None:
        with self._mapped():
            self._client.hdel(self.key, session_id)

    def page(self, cursor: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        # HSCAN: a walk returns every field present throughout it (some maybe twice).
        with self._mapped():
            following, found = self._client.hscan(self.key, cursor=int(cursor or 0), count=limit)
        assert isinstance(found, dict)
        rows = [(text(sid), text(record)) for sid, record in found.items()]
        return rows, (None if int(following) == 0 else str(following))

    def count(self) -> int:
        with self._mapped():
            return int(self._client.hlen(self.key))

    def close(self) -> None:
        """Close the client this key hash created (not one passed in)."""
        if not self._closed:
            self._closed = True
            if self._owns:
                self._client.close()
