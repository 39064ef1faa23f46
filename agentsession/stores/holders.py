"""Telling who holds a session's run lease, for a caller about to wait for it.

A lease's holder is found only when someone asks (``StoreBase.lease_holder``): taking a
lease records nothing more than it did before, so runs pay nothing for it. Each engine
finds the holder its own way (the SQLite side file's locks in ``/proc``, PostgreSQL's
``pg_locks``, the owner string Redis keeps as the lease's value); the pieces they share
are here. Every function is thread-safe.
"""

from __future__ import annotations

import os
import re
import socket

from ..protocol import LeaseHolder

__all__ = ("holder_of_owner", "owner_prefix", "this_process")

# agentsession's owners start "<host>:<pid>:" (the runner's, the edits', the chat's).
_OWNER = re.compile(r"([^:\s]+):([0-9]{1,10}):")


def owner_prefix() -> str:
    """``"<host>:<pid>:"``: how every owner this process makes begins."""
    return f"{socket.gethostname()}:{os.getpid()}:"


def this_process() -> LeaseHolder:
    """The calling process as a lease holder (its pid and this host's name)."""
    return LeaseHolder(os.getpid(), socket.gethostname())


def holder_of_owner(owner: str) -> LeaseHolder:
    """The holder an owner string names: its host and pid when it is one of
    agentsession's (``"<host>:<pid>:..."``), else an unknown holder."""
    match = _OWNER.match(owner)
    if match is None:
        return LeaseHolder()
    return LeaseHolder(int(match.group(2)), match.group(1))
