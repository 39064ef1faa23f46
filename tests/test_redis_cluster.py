"""Redis Cluster only: clients and URLs, sessions spread over nodes, scripts, resharding.

The conformance suite runs every ``Store`` promise on the cluster too (store kind
``redis-cluster``); this file covers what it cannot see: that sessions really live on
different nodes while what spans them (listing, prune, export) sees them all, that a
node without the store's scripts is given them, and that moving slots between nodes
(``redis-cli --cluster reshard``) while writers run loses no add. The cluster is the
one ``.ci/services`` starts (127.0.0.1:7000-7002, three masters).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from agentsession import RedisSessionMemory, StoreError
from agentsession.stores.redis import RedisStore
from agentsession.stores.redis.core import cluster_url, session_keys
from tests import services

pytestmark = pytest.mark.services


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture
def url() -> str:
    return services.redis_cluster_url()


@pytest.fixture
def prefix(url: str) -> Iterator[str]:
    name = services.unique_name("agentsession-test")
    yield name
    services.drop_redis_prefix(name, url)


@pytest.fixture
def make(url: str, prefix: str) -> Iterator[Callable[..., RedisStore]]:
    """``make(**kwargs)``: a ``RedisStore`` on the cluster and the test prefix."""
    made: list[RedisStore] = []

    def factory(target: Any = None, **kwargs: Any) -> RedisStore:
        kwargs.setdefault("prefix", prefix)
        store = RedisStore(url if target is None else target, **kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


def _node_of(client: RedisCluster, prefix: str, session_id: str) -> str:
    key = session_keys(prefix, session_id)[0]
    return str(client.get_node_from_key(key).name)


# -- clients and URLs ----------------------------------------------------------------------


def test_the_cluster_parameter_of_a_url_picks_the_client() -> None:
    assert cluster_url("redis://h:7000/?cluster=true") == ("redis://h:7000/", True)
    assert cluster_url("redis://h:7000/0?Cluster=1") == (
        "redis://h:7000/0?Cluster=1",
        False,
    )
    assert cluster_url("redis://h:7000/0?cluster=no&client_name=x") == (
        "redis://h:7000/0?client_name=x",
        False,
    )
    with pytest.raises(ValueError, match="cluster must be true or false.*'maybe'"):
        RedisStore("redis://127.0.0.1:7000/?cluster=maybe")


def test_a_cluster_url_makes_a_cluster_client_closed_with_the_store(url: str) -> None:
    store = RedisStore(url)
    assert isinstance(store.client, RedisCluster)
    assert repr(store).startswith("RedisStore('cluster 127.0.0.1:")
    store.close()
    with pytest.raises(StoreError):
        store.get_messages("s")


def test_a_cluster_client_passed_in_is_used_and_left_open(
    url: str, make: Callable[..., RedisStore]
) -> None:
    client = RedisCluster.from_url(cluster_url(url)[0], decode_responses=True)
    try:
        store = make(client)
        store.add_messages("s", [user("1")])
        store.close()
        assert client.ping()
        memory = RedisSessionMemory(client, prefix=store.prefix)
        assert memory.store.get_messages("s") == [user("1")]
        memory.close()
        assert client.ping()
    finally:
        client.close()


def test_an_unreachable_cluster_is_a_store_error_naming_the_host_only() -> None:
    with pytest.raises(StoreError, match="127.0.0.1:1") as caught:
        RedisStore("redis://user:s3cret-pw@127.0.0.1:1/?cluster=true")
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.__cause__ is not None


# -- what spans sessions, on sessions that live on different nodes -------------------------


def test_listing_prune_and_export_see_sessions_on_every_node(
    make: Callable[..., RedisStore], prefix: str
) -> None:
    store = make()
    ids = [f"s{n}" for n in range(24)]
    for n, session_id in enumerate(ids):
        store.add_messages(session_id, [user(str(n)), user(f"{n}b")])
    assert isinstance(store.client, RedisCluster)
    nodes = {_node_of(store.client, prefix, session_id) for session_id in ids}
    assert len(nodes) == 3, f"the sessions should span the three masters, not {nodes}"

    listed = [info.session_id for info in store.list_sessions()]
    assert listed == ids[::-1]  # newest first, across nodes
    page = store.list_sessions_page(limit=10)
    rest = store.list_sessions_page(limit=100, cursor=page.next_cursor)
    assert [i.session_id for i in page.sessions + rest.sessions] == ids[::-1]

    exported = io.StringIO()
    assert store.export_jsonl(exported) == len(ids)
    # Trim every session to one message, then drop the oldest half: on every node.
    assert store.prune(keep_last=1) == len(ids)
    assert all(store.message_count(session_id) == 1 for session_id in ids)
    cutoff = store.session_info(ids[12]).updated_at
    assert store.prune(older_than=cutoff) == 12
    assert [info.session_id for info in store.list_sessions()] == ids[12:][::-1]

    fresh = make(prefix=services.unique_name("agentsession-test"))
    try:
        exported.seek(0)
        assert fresh.import_jsonl(exported) == len(ids)
        assert [i.session_id for i in fresh.list_sessions()] == ids[::-1]
        assert fresh.get_messages("s7") == [user("7"), user("7b")]
    finally:
        for session_id in ids:
            fresh.clear_session(session_id)


def test_a_node_that_lost_the_scripts_gets_them_again(
    make: Callable[..., RedisStore],
) -> None:
    store = make()
    for n in range(12):
        store.add_messages(f"s{n}", [user(str(n))])
    client = store.client
    assert isinstance(client, RedisCluster)
    # As after a node restart, or a new node given slots: no script is loaded anywhere.
    client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    assert len(store.list_sessions()) == 12  # INFO, pipelined to every node
    client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    assert store.try_lock("s1", "me", 5.0)  # one script on one node
    store.add_messages("s1", [user("again")])
    assert store.message_count("s1") == 2
    store.unlock("s1", "me")


# -- resharding while writers run ------------------------------------------------------------


def _slot_owner(client: RedisCluster, slot: int) -> Any:
    return client.nodes_manager.get_node_from_slot(slot)


def _reshard(source: Any, target: Any, slots: int) -> None:
    """Move the first ``slots`` slots of ``source`` to ``target`` with redis-cli."""
    subprocess.run(
        [
            "redis-cli",
            "--cluster",
            "reshard",
            f"{source.host}:{source.port}",
            "--cluster-from",
            _node_id(source),
            "--cluster-to",
            _node_id(target),
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _agree(client: RedisCluster, slots: list[int], owner: Any) -> None:
    """Tell every primary that ``owner`` serves ``slots`` (CLUSTER SETSLOT ... NODE).

    redis-cli tells the two nodes of a move only; the others learn it by gossip, and a
    node whose view of a slot went stale between two quick moves can keep it (seen: the
    slot's owner itself naming the other node, the cluster left with a slot uncovered).
    Told directly, every node agrees at once.
    """
    owner_id = _node_id(owner)
    for node in client.get_primaries():
        with redis.Redis(host=node.host, port=node.port) as direct:
            for slot in slots:
                direct.execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner_id)


def _node_id(node: Any) -> str:
    with redis.Redis(host=node.host, port=node.port) as direct:
        return str(direct.execute_command("CLUSTER MYID").decode())


def _wait_stable(url: str) -> None:
    """Until every node agrees on the slots (redis-cli's own check passes)."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    deadline = time.monotonic() + 20
    while True:
        check = subprocess.run(
            ["redis-cli", "--cluster", "check", host_port],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if check.returncode == 0 and "[OK] All 16384 slots covered" in check.stdout:
            return
        assert time.monotonic() < deadline, check.stdout + check.stderr
        time.sleep(0.2)


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_resharding_while_writers_run_loses_no_add(
    url: str, make: Callable[..., RedisStore], prefix: str
) -> None:
    """Writers add to sessions whose slots move to another node and back meanwhile.

    Proves: no add fails; each session holds exactly the adds that returned, in order;
    the run lease and the listing work across the move.
    """
    _wait_stable(url)
    store = make()
    client = store.client
    assert isinstance(client, RedisCluster)
    source = _slot_owner(client, 0)
    target = next(node for node in client.get_primaries() if node.name != source.name)
    moved = 32
    # Sessions in the first ``moved`` slots of the source node: the slots redis-cli moves.
    owned = [slot for slot in range(16384) if _slot_owner(client, slot).name == source.name]
    moving = set(owned[:moved])
    ids: list[str] = []
    n = 0
    while len(ids) < 4:
        session_id = f"w{n}"
        n += 1
        if key_slot(session_keys(prefix, session_id)[0].encode()) in moving:
            ids.append(session_id)
    slots = [key_slot(session_keys(prefix, session_id)[0].encode()) for session_id in ids]

    done = threading.Event()
    returned: dict[str, list[str]] = {session_id: [] for session_id in ids}
    errors: list[BaseException] = []

    def writer(session_id: str) -> None:
        count = 0
        while not done.is_set() or count < 20:
            text = f"{session_id}-{count}"
            try:
                store.add_messages(session_id, [user(text)])
            except BaseException as exc:
                errors.append(exc)
                return
            returned[session_id].append(text)
            count += 1

    threads = [threading.Thread(target=writer, args=(sid,)) for sid in ids]
    for thread in threads:
        thread.start()
    try:
        _reshard(source, target, moved)
        _agree(client, sorted(moving), target)
        assert {_owner_id(source, slot) for slot in slots} == {_node_id(target)}
        assert store.try_lock(ids[0], "me", 5.0)  # the lease, on the node it moved to
        store.unlock(ids[0], "me")
        _wait_stable(url)  # every node knows the new owners before they move back
        _reshard(target, source, moved)
    finally:
        done.set()
        for thread in threads:
            thread.join(60)
        _agree(client, sorted(moving), source)  # the cluster as it was, for what follows
        _wait_stable(url)
    assert not errors, f"{len(errors)} adds failed; the first: {errors[0]!r}"
    for session_id in ids:
        stored = [item["content"] for item in store.get_messages(session_id)]
        assert stored == returned[session_id]
    assert {i.session_id for i in store.list_sessions()} == set(ids)


def _owner_id(node: Any, slot: int) -> str:
    """The id of the node that owns ``slot``, as ``node`` sees it."""
    with redis.Redis(host=node.host, port=node.port) as direct:
        for start, end, owner, *_ in direct.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return str(owner[2].decode())
    raise AssertionError(f"no node owns slot {slot}")


def test_an_add_whose_reply_is_lost_is_not_sent_again(
    make: Callable[..., RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ran the add, then the connection broke before its reply: the store
    raises ``StoreError`` and stores the turn once (a retry would store it twice)."""
    store = make()
    store.add_messages("s", [user("warm")])  # the script is loaded, the node known
    real = redis.connection.Connection.read_response
    broken: list[object] = []

    def lose_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = real(self, *args, **kwargs)
        if not broken:
            broken.append(self)
            self.disconnect()
            raise redis.exceptions.ConnectionError("the connection broke before the reply")
        return reply

    monkeypatch.setattr(redis.connection.Connection, "read_response", lose_reply)
    with pytest.raises(StoreError, match="the connection broke") as caught:
        store.add_messages("s", [user("once")])
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    monkeypatch.undo()
    assert store.get_messages("s") == [user("warm"), user("once")]


def test_the_usage_ledger_on_every_node(make: Callable[..., RedisStore]) -> None:
    from datetime import datetime, timezone

    from agentsession import RunRecord

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    store = make()
    ids = [f"ledger-{n}" for n in range(12)]  # enough to land on every node
    for n, session_id in enumerate(ids, 1):
        run = RunRecord(f"r{n}", session_id, at, at, "A", "m", 1, n, 0, n, 0, 0, 1, "completed")
        store.add_messages(session_id, [user(str(n))], run=run)
    assert store.try_lock("ledger-1", "owner", 5.0)
    extra = RunRecord("r0", "ledger-1", at, at, "A", "m", 1, 100, 0, 100, 0, 0, 0, "failed")
    store.write_and_unlock("ledger-1", "owner", [], run=extra)  # one script, lease given back
    assert store.try_lock("ledger-1", "other", 5.0)
    store.unlock("ledger-1", "other")
    ranked = store.usage_by_session()
    assert [sid for sid, _ in ranked] == ["ledger-1", *reversed(ids[2:]), "ledger-0"]
    assert ranked[0][1].total_tokens == 102
    store.clear_session("ledger-1")
    assert store.usage("ledger-1").runs == 0
    assert len(store.usage_by_session()) == len(ids) - 1
