"""Fork: a memory created before ``os.fork()`` (a preforking server) works in every child.

``tests/test_sqlite.py::test_a_store_created_before_fork_works_in_the_child`` covers one
child of a blocking store; this is the preforking server: an async memory that has served
requests, several children serving at once, the parent serving meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentsession import SQLiteStore

from . import _workers
from ._workers import Scale, check_bookkeeping, fork_items, integrity_check, receive, split_groups

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.timeout(600 if _workers.FULL_SIZE else 120),
]


def test_a_memory_created_before_fork_serves_in_every_child(
    tmp_path: Path, scale: Scale, spawn: Callable[..., Any]
) -> None:
    """A server process creates a ``SQLiteSessionMemory``, serves, then forks W workers.

    Before the fork the memory has run requests on an event loop (its worker threads have
    come and gone) and the main thread holds an open connection that every child inherits.
    Each child runs its own event loop: T turns of read history, add to its own session,
    add to a shared session; then blocking calls; then closes the memory, as a worker
    shutting down would. The server keeps writing while the children run, and writes
    again (async) after they have all exited. This runs in a fresh single-threaded child
    process, as a server's master process would be.

    Proves: every child exits cleanly; each child's session holds exactly its turns; the
    shared session holds every turn of every child, each whole and in order; a child
    closing its memory does not disturb the parent, which still reads and writes; the
    file is sound.
    """
    workers, turns = scale(4, 8), scale(20, 200)
    path = tmp_path / "prefork.db"
    proc, conn = spawn(_workers.preforking_server, str(path), workers, turns)
    report = receive(conn, "done", proc, timeout=500)[1]
    proc.join(30)
    assert report["codes"] == [0] * workers, report
    assert report["server_count"] == 2 * (turns + 2)

    with SQLiteStore(path) as store:
        for worker in range(workers):
            who = f"worker-{worker}"
            want = [m for turn in range(turns) for m in fork_items(who, turn)]
            assert store.get_messages(who) == want, who
            assert store.get_messages(f"{who}-sync") == fork_items(who, 0)
        order = split_groups(store.get_messages("shared"), lambda m: (m["w"], m["turn"]))
        for worker in range(workers):
            who = f"worker-{worker}"
            assert [turn for w, turn in order if w == who] == list(range(turns)), who  # type: ignore[misc]
        assert len(order) == workers * turns
        want = [m for turn in range(turns + 2) for m in fork_items("server", turn)]
        assert store.get_messages("server") == want
    check_bookkeeping(path)
    assert integrity_check(path) == ["ok"]
    _workers.figure(
        f"fork: {workers} children of a preforking server x {turns} turns, and the server "
        "itself, on one memory created before fork(): 0 errors, nothing lost"
    )
