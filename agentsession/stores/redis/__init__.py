"""The Redis engine: ``RedisStore``, on redis-py.

Needs the ``redis`` extra; importing this package without it raises
``MissingDependencyError`` with the ``pip install`` command. Modules: ``store`` (the
per-session writes), ``core`` (keys, scripts, the activity index), ``scripts`` (the Lua
scripts), ``history``, ``retention``, ``jsonl`` and ``keys`` (the key hash of encryption at rest).
"""

from __future__ import annotations

# isort: off
from .store import RedisStore  # first: without redis-py it names the extra to install
from .keys import RedisKeyHash

# isort: on

__all__ = ("RedisKeyHash", "RedisStore")
