"""The PostgreSQL engine: ``PostgresStore``, on psycopg 3 and psycopg_pool.

Needs the ``postgres`` extra; importing this package without it raises
``MissingDependencyError`` with the ``pip install`` command. Modules: ``store``
(the pool, transactions, the per-session writes), ``base`` (value conversions shared by
the modules), ``keys`` (the key table of encryption at rest), ``history``,
``retention``, ``jsonl`` and ``schema``.
"""

from __future__ import annotations

# isort: off
from .store import PostgresStore  # first: without psycopg it names the extra to install
from .keys import PostgresKeyTable

# isort: on

__all__ = ("PostgresKeyTable", "PostgresStore")
