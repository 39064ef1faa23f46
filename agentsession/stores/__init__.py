"""Blocking session stores, one per storage engine; each implements ``protocol.Store``.

``SQLiteStore`` needs nothing beyond the standard library; ``PostgresStore`` and
``RedisStore`` are imported on first use and need the ``postgres`` / ``redis`` extras
(a ``MissingDependencyError`` with the ``pip install`` command says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .sqlite import SQLiteStore

if TYPE_CHECKING:
    from .postgres import PostgresStore
    from .redis import RedisStore

__all__ = ("PostgresStore", "RedisStore", "SQLiteStore")


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
