"""Exceptions raised by agentsession.

Caller mistakes raise the builtins (``ValueError``, ``TypeError``) with a message that
names the bad value. Failures of a storage backend raise the tree below; the driver's own
exception (``sqlite3``, ``psycopg``, ``redis``) is kept as ``__cause__``::

    AgentSessionError
     ├── StoreError              a backend failed; __cause__ is the driver's error
     │    ├── StoreBusy          the database stayed locked past the busy timeout
     │    ├── StoreClosed        the store was used after close()
     │    └── SchemaError        the database is not usable by this version
     └── MissingDependencyError  an optional extra is not installed (also an ImportError)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

__all__ = (
    "AgentSessionError",
    "MissingDependencyError",
    "SchemaError",
    "StoreBusy",
    "StoreClosed",
    "StoreError",
    "map_exceptions",
)


class AgentSessionError(Exception):
    """Base class of every exception agentsession raises on its own account."""


class StoreError(AgentSessionError):
    """A storage backend failed. The driver's exception is ``__cause__``."""


class StoreBusy(StoreError):
    """The database stayed locked by other writers past the store's busy timeout."""


class StoreClosed(StoreError):
    """The store (or the memory around it) was used after ``close()``."""


class SchemaError(StoreError):
    """The database cannot be used: written by a newer version, not ours, or unmigratable."""


class MissingDependencyError(AgentSessionError, ImportError):
    """An optional extra is not installed; the message carries the ``pip install`` hint."""


ExceptionMapping = Mapping[type[BaseException], type[Exception]]


@contextlib.contextmanager
def map_exceptions(mapping: ExceptionMapping) -> Iterator[None]:
    """Translate driver exceptions into ours, keeping the original as ``__cause__``.

    The most specific match wins: for each raised exception, the mapping entry whose key
    is the closest class in the exception's MRO is used. Exceptions that match nothing
    propagate unchanged.
    """
    try:
        yield
    except AgentSessionError:
        raise
    except Exception as exc:
        for klass in type(exc).__mro__:
            target = mapping.get(klass)
            if target is not None:
                raise target(str(exc)) from exc
        raise
