"""The Redis engine: ``RedisStore``, on redis-py.

Needs the ``redis`` extra; importing this package without it raises
``MissingDependencyError`` with the ``pip install`` command. Modules: ``store`` (the
per-session writes), ``core`` (keys, scripts, the activity index), ``scripts`` (the Lua
scripts), ``history``, ``retention``, ``jsonl`` and ``keys`` (the key hash of encryption at rest).
"""

from __future__ import annotations

from .keys import RedisKeyHash
from .store import RedisStore

__all__ = ("RedisKeyHash", "RedisStore")
