"""The usage ledger of ``RedisStore``: run records in each session's ``runs`` list.

Each record is one JSON text (``stores.runs.to_json``), pushed at the list's head, so the
list is newest first. Sums are computed here from the records (Redis has no ``SUM``).
"""

from __future__ import annotations

from collections.abc import Iterator

from ...protocol import RunRecord, SessionUsage
from ..runs import from_json, sum_runs
from .core import Keyspace, runs_key, session_id_of_runs, text

__all__ = ("runs", "usage", "usage_by_session")

#: Keys read per SCAN round trip when listing every ledger.
_SCAN = 500


def _records(session_id: str, items: list[bytes | str]) -> list[RunRecord]:
    return [from_json(text(item), session_id) for item in items]


def runs(ks: Keyspace, session_id: str, limit: int) -> list[RunRecord]:
    with ks.mapped():
        items = ks.client.lrange(runs_key(ks.prefix, session_id), 0, limit - 1)
    return _records(session_id, items)


def usage(ks: Keyspace, session_id: str) -> SessionUsage:
    with ks.mapped():
        items = ks.client.lrange(runs_key(ks.prefix, session_id), 0, -1)
    return sum_runs(_records(session_id, items))


def _ledger_ids(ks: Keyspace) -> Iterator[str]:
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in ks.prefix) + ":{*}:runs"
    with ks.mapped():
        keys = list(ks.client.scan_iter(match=pattern, count=_SCAN))
    for key in keys:
        session_id = session_id_of_runs(ks.prefix, key)
        if session_id is not None:
            yield session_id


def usage_by_session(ks: Keyspace, limit: int | None) -> list[tuple[str, SessionUsage]]:
    """Every ledger summed (SCAN over the ledgers, then one pipelined read of them)."""
    session_ids = sorted(set(_ledger_ids(ks)))
    with ks.mapped():
        pipe = ks.client.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.lrange(runs_key(ks.prefix, session_id), 0, -1)
        replies = pipe.execute() if session_ids else []
    found = [
        (session_id, sum_runs(_records(session_id, items)))
        for session_id, items in zip(session_ids, replies, strict=True)
        if items
    ]
    found.sort(key=lambda pair: -pair[1].total_tokens)
    return found if limit is None else found[:limit]
