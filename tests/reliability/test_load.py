"""Load: many processes and threads writing one database file lose and mix up nothing."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentsession import SQLiteStore

from . import _workers
from ._workers import (
    Scale,
    check_bookkeeping,
    integrity_check,
    own_session,
    shared_session,
    split_groups,
    turn_items,
)

pytestmark = pytest.mark.timeout(900 if _workers.FULL_SIZE else 120)


def test_processes_and_threads_writing_one_file_lose_nothing(
    tmp_path: Path, scale: Scale, spawn: Callable[..., Any]
) -> None:
    """N processes x M threads x T turns on one file: zero errors, every session exact.

    Each writer, per turn, reads its own session's newest message (it must be the last of
    its previous turn: read-your-writes), adds the turn's 1-4 messages to its own session,
    then adds them again to a session shared with writers of every process. Half the
    processes use blocking ``SQLiteStore`` calls from threads, half
    ``SQLiteSessionMemory`` from asyncio tasks. All processes start writing together.

    Proves: no writer sees an error (``StoreBusy`` included); each own session holds
    exactly its turns, in order; each shared session holds every turn of its writers,
    each turn contiguous, each writer's turns in order; the session bookkeeping matches
    the rows and ``PRAGMA integrity_check`` is ok.
    """
    processes, threads, turns = scale(4, 4), scale(4, 8), scale(25, 200)
    path = tmp_path / "load.db"
    SQLiteStore(path).close()  # the schema exists before the race starts
    workers = [spawn(_workers.load_worker, str(path), p, threads, turns) for p in range(processes)]
    for proc, conn in workers:
        _workers.receive(conn, "ready", proc)
    began = time.perf_counter()
    for _, conn in workers:
        conn.send("go")
    reports = [_workers.receive(conn, "done", proc, timeout=800)[1] for proc, conn in workers]
    wall = time.perf_counter() - began
    for proc, _ in workers:
        proc.join(30)
        assert proc.exitcode == 0, f"{proc.name} exit code {proc.exitcode}"

    errors = [tb for report in reports for tb in report["errors"]]
    assert not errors, f"{len(errors)} errors; the first:\n{errors[0]}"

    expected_shared: dict[str, list[str]] = defaultdict(list)
    with SQLiteStore(path) as store:
        for p in range(processes):
            for t in range(threads):
                want = [m for turn in range(turns) for m in turn_items(p, t, turn)]
                assert store.get_messages(own_session(p, t)) == want, own_session(p, t)
                expected_shared[shared_session(p, t)].append(own_session(p, t))
        for session, writers in expected_shared.items():
            messages = store.get_messages(session)
            order = split_groups(messages, lambda m: (m["w"], m["turn"]))
            by_writer: dict[str, list[int]] = defaultdict(list)
            for writer, turn in order:  # type: ignore[misc]
                by_writer[writer].append(turn)
            assert sorted(by_writer) == sorted(writers), session
            for writer, seen in by_writer.items():
                assert seen == list(range(turns)), f"{writer} in {session}: {seen}"
        sessions = {info.session_id: info.message_count for info in store.list_sessions()}
        assert len(sessions) == processes * threads + len(expected_shared)
    check_bookkeeping(path)
    assert integrity_check(path) == ["ok"]

    adds = processes * threads * turns * 2
    _workers.figure(
        f"load: {processes} processes x {threads} threads x {turns} turns = {adds} adds "
        f"and {adds // 2} reads in {wall:.1f} s ({adds / wall:.0f} adds/s), 0 errors"
    )
