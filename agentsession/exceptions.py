"""Exceptions raised by agentsession.

Caller mistakes raise the builtins (``ValueError``, ``TypeError``) with a message that
names the bad value. Failures of a storage backend raise the tree below; the driver's own
exception (``sqlite3``, ``psycopg``, ``redis``) is kept as ``__cause__``::

    AgentSessionError
     ├── StoreError              a backend failed; __cause__ is the driver's error
     │    ├── StoreBusy          the database stayed locked past the busy timeout
     │    ├── StoreClosed        the store was used after close()
     │    └── SchemaError        the database is not usable by this version
     ├── SessionBusy             another run holds the session (lock timeout, or lock="fail")
     ├── DecryptionError         encrypted data that cannot be read (wrong/missing key, altered)
     ├── SessionBudgetExceeded   the session has spent its RunConfig(max_session_tokens=...)
     ├── NotSupportedError       the store's engine cannot do this (also NotImplementedError)
     └── MissingDependencyError  an optional extra is not installed (also an ImportError)
"""

from __future__ import annotations

__all__ = (
    "AgentSessionError",
    "DecryptionError",
    "MissingDependencyError",
    "NotSupportedError",
    "SchemaError",
    "SessionBudgetExceeded",
    "SessionBusy",
    "StoreBusy",
    "StoreClosed",
    "StoreError",
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


class SessionBusy(AgentSessionError):
    """Another run holds the session: it stayed held past the lock timeout, or the run
    was configured not to wait (``RunConfig(session_lock="fail")``)."""


class SessionBudgetExceeded(AgentSessionError):
    """The session's recorded runs have spent its token budget
    (``RunConfig(max_session_tokens=...)``); raised before the run calls any model.

    Attributes:
        session_id: the session.
        total_tokens: the ``total_tokens`` its usage ledger records.
        budget: the ``max_session_tokens`` it reached.
    """

    def __init__(self, session_id: str, total_tokens: int, budget: int) -> None:
        super().__init__(
            f"session {session_id!r} has used {total_tokens} tokens, at or over its budget "
            f"of max_session_tokens={budget}; the run was not started"
        )
        self.session_id = session_id
        self.total_tokens = total_tokens
        self.budget = budget


class DecryptionError(AgentSessionError):
    """Encrypted data cannot be read: its key is wrong or missing (shredded, a master key
    not in the ring), or the data was altered. The message names the session; nothing of
    it is returned, and plaintext is never read in its place."""


class MissingDependencyError(AgentSessionError, ImportError):
    """An optional extra is not installed; the message carries the ``pip install`` hint."""


class NotSupportedError(AgentSessionError, NotImplementedError):
    """The store's engine cannot offer this feature (full-text search on Redis, say).

    The message names the store, the feature and the engines that have it.
    """
