"""The SQLite engine: ``SQLiteStore``, on the standard library's ``sqlite3``.

Modules: ``store`` (connections, transactions, the per-session writes), ``history``
(listing, metadata, search, fork), ``retention`` (prune, TTL, vacuum), ``jsonl`` (export
and import hooks), ``keys`` (the key file of encryption at rest) and ``schema`` (tables
and migrations, through sqlite-utils).
"""

from __future__ import annotations

from .keys import SQLiteKeyFile
from .store import SQLiteStore

__all__ = ("SQLiteKeyFile", "SQLiteStore")
