"""Redis-only behaviour: key layout, hash tags, TTL, the index, clients, errors, processes.

The conformance suite (``tests/conformance``) runs every ``Store`` promise on Redis too;
this file covers what it cannot see. Each test writes under a key prefix of its own,
deleted afterwards (see ``tests/services.py``).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from agentsession import NotSupportedError, StoreBusy, StoreClosed, StoreError
from agentsession.stores.redis import RedisStore
from tests import services
from tests.conftest import run_in_threads

pytestmark = pytest.mark.services


#: Session ids that stress the key layout: braces, percent signs, separators, Unicode.
AWKWARD_IDS = ["plain", "{", "}", "{}", "a{b}c", "}{", "%7B", "%", "x:y", "中文 ✓", "a{b"]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture
def prefix() -> Iterator[str]:
    name = services.unique_name("agentsession-test")
    yield name
    services.drop_redis_prefix(name)


@pytest.fixture
def client() -> Iterator[Any]:
    made = redis.Redis.from_url(services.redis_url())
    yield made
    made.close()


@pytest.fixture
def make(prefix: str) -> Iterator[Callable[..., RedisStore]]:
    """``make(**kwargs)``: a ``RedisStore`` on the test prefix, closed after the test."""
    made: list[RedisStore] = []

    def factory(url: Any = None, **kwargs: Any) -> RedisStore:
        kwargs.setdefault("prefix", prefix)
        store = RedisStore(services.redis_url() if url is None else url, **kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


def _keys(client: Any, prefix: str) -> list[str]:
    return sorted(key.decode() for key in client.scan_iter(match=f"{prefix}*", count=1000))


# -- key layout --------------------------------------------------------------------------


def test_every_key_of_a_session_shares_one_hash_tag_and_slot(
    make: Callable[..., RedisStore], client: Any, prefix: str
) -> None:
    store = make()
    for session_id in AWKWARD_IDS:
        store.add_messages(session_id, [user(session_id)])
        assert store.try_lock(session_id, "run", 60)
    keys = _keys(client, prefix)
    assert f"{prefix}:sessions" in keys
    tags: dict[str, set[str]] = {}
    for key in keys:
        assert key.startswith(f"{prefix}:")
        if key == f"{prefix}:sessions":
            continue
        rest = key[len(prefix) + 1 :]
        # One hash tag, right after the prefix, holding no brace: "{<id>}:<kind>".
        assert rest.startswith("{") and rest.count("{") == 1 and rest.count("}") == 1, key
        tag, kind = rest[1:].split("}:")
        assert kind in ("messages", "session", "lock")
        tags.setdefault(tag, set()).add(kind)
        assert key_slot(key.encode()) == key_slot(tag.encode())
    # One tag per session (different ids never share one), each with all three keys.
    assert len(tags) == len(AWKWARD_IDS)
    assert all(kinds == {"messages", "session", "lock"} for kinds in tags.values())
    for session_id in AWKWARD_IDS:
        assert store.get_messages(session_id) == [user(session_id)]
    assert {info.session_id for info in store.list_sessions()} == set(AWKWARD_IDS)


def test_prefixes_keep_stores_apart(make: Callable[..., RedisStore], prefix: str) -> None:
    first = make()
    other_prefix = f"{prefix}:other"
    second = make(prefix=other_prefix)
    first.add_messages("s", [user("first")])
    second.add_messages("s", [user("second")])
    assert first.get_messages("s") == [user("first")]
    assert second.get_messages("s") == [user("second")]
    assert [info.session_id for info in first.list_sessions()] == ["s"]
    first.clear_session("s")
    assert second.get_messages("s") == [user("second")]


@pytest.mark.parametrize(
    ("prefix_value", "error"),
    [("", ValueError), ("a{b", ValueError), ("a}", ValueError), (5, TypeError), (None, TypeError)],
)
def test_bad_prefixes_are_refused(prefix_value: Any, error: type) -> None:
    with pytest.raises(error, match="prefix"):
        RedisStore(services.redis_url(), prefix=prefix_value)


@pytest.mark.parametrize(
    ("ttl", "error"),
    [(timedelta(0), ValueError), (timedelta(seconds=-1), ValueError), (60, TypeError)],
)
def test_bad_ttls_are_refused(ttl: Any, error: type) -> None:
    with pytest.raises(error, match="ttl"):
        RedisStore(services.redis_url(), ttl=ttl)


# -- TTL -----------------------------------------------------------------------------------


def _pttls(client: Any, prefix: str, session_id: str) -> dict[str, int]:
    """Milliseconds left of each of the session's keys (-1: no expiry, -2: no key)."""
    return {
        kind: client.pttl(f"{prefix}:{{{session_id}}}:{kind}")
        for kind in ("messages", "session", "lock")
    }


def test_ttl_expires_every_key_of_a_session_and_slides_on_each_write(
    make: Callable[..., RedisStore], client: Any, prefix: str
) -> None:
    store = make(ttl=timedelta(seconds=100))
    store.add_messages("s", [user("1")])
    left = _pttls(client, prefix, "s")
    assert 99_000 < left["messages"] <= 100_000 and 99_000 < left["session"] <= 100_000
    assert left["lock"] == -2
    writes: list[Callable[[], object]] = [
        lambda: store.add_messages("s", [user("2")]),
        lambda: store.set_metadata("s", {"k": 1}),
        lambda: store.update_metadata("s", {"k": 2}),
        lambda: store.pop_message("s"),
        lambda: store.truncate("s", 0),
    ]
    for write in writes:
        # Run the clock down, then write: the expiry is set again from the full TTL.
        for kind in ("messages", "session"):
            client.pexpire(f"{prefix}:{{s}}:{kind}", 5_000)
        write()
        left = _pttls(client, prefix, "s")
        assert 99_000 < left["session"] <= 100_000, write
        assert left["messages"] == -2 or 99_000 < left["messages"] <= 100_000, write
    # Reads do not extend it.
    client.pexpire(f"{prefix}:{{s}}:session", 5_000)
    store.get_messages("s")
    store.session_info("s")
    assert _pttls(client, prefix, "s")["session"] <= 5_000


def test_without_ttl_keys_do_not_expire_and_a_new_list_follows_its_record(
    make: Callable[..., RedisStore], client: Any, prefix: str
) -> None:
    store = make()
    store.add_messages("s", [user("1")])
    assert _pttls(client, prefix, "s") == {"messages": -1, "session": -1, "lock": -2}
    # A session written with a TTL (by another store) keeps expiring as a whole.
    make(ttl=timedelta(seconds=100)).add_messages("t", [user("1")])
    store.pop_message("t")  # the list is gone, the record (with its expiry) stays
    store.add_messages("t", [user("2")])
    left = _pttls(client, prefix, "t")
    assert 0 < left["messages"] <= 100_000 and 0 < left["session"] <= 100_000


def test_run_leases_are_keys_that_redis_expires(
    make: Callable[..., RedisStore], client: Any, prefix: str
) -> None:
    store = make()
    assert store.try_lock("s", "run-1", 30)
    assert 0 < client.pttl(f"{prefix}:{{s}}:lock") <= 30_000
    assert not store.try_lock("s", "run-2", 30)
    assert store.try_lock("s", "run-1", 60)  # renewed by its owner
    assert 30_000 < client.pttl(f"{prefix}:{{s}}:lock") <= 60_000
    store.unlock("s", "run-2")  # not the owner: nothing happens
    assert not store.try_lock("s", "run-2", 30)
    # An expired lease (the key gone) is free for anyone.
    client.delete(f"{prefix}:{{s}}:lock")
    assert store.try_lock("s", "run-2", 30)
    store.unlock("s", "run-2")
    assert client.exists(f"{prefix}:{{s}}:lock") == 0
    with pytest.raises(ValueError, match="lease"):
        store.try_lock("s", "run-3", 0)
    with pytest.raises(TypeError, match="owner"):
        store.try_lock("s", None, 30)  # type: ignore[arg-type]


# -- the sessions index ----------------------------------------------------------------------


def test_listing_skips_and_removes_sessions_whose_keys_are_gone(
    make: Callable[..., RedisStore], client: Any, prefix: str
) -> None:
    store = make()
    for session_id in ("a", "b", "c"):
        store.add_messages(session_id, [user(session_id)])
    # What a TTL expiry does: the session's keys vanish, its index entry stays.
    client.delete(f"{prefix}:{{b}}:messages", f"{prefix}:{{b}}:session")
    assert client.zscore(f"{prefix}:sessions", "b") is not None
    page = store.list_sessions_page(limit=2)
    assert [info.session_id for info in page.sessions] == ["c", "a"]
    assert page.next_cursor is None
    assert client.zscore(f"{prefix}:sessions", "b") is None
    client.delete(f"{prefix}:{{a}}:messages", f"{prefix}:{{a}}:session")
    assert [info.session_id for info in store.list_sessions()] == ["c"]
    assert client.zrange(f"{prefix}:sessions", 0, -1) == [b"c"]
    assert store.session_info("a") is None and store.get_messages("a") == []
    assert store.expire_idle(timedelta(seconds=1)) == 0


def test_a_session_missing_from_the_index_comes_back_on_its_next_write(
    make: Callable[..., RedisStore], client: Any, prefix: str
) -> None:
    store = make()
    store.add_messages("s", [user("1")])
    client.zrem(f"{prefix}:sessions", "s")  # an index update that never arrived
    assert store.list_sessions() == []
    assert store.get_messages("s") == [user("1")]  # the session itself is intact
    store.add_messages("s", [user("2")])
    assert [(i.session_id, i.message_count) for i in store.list_sessions()] == [("s", 2)]


def test_index_scores_are_the_sessions_last_activity(
    make: Callable[..., RedisStore], client: Any, prefix: str
) -> None:
    store = make()
    before = client.time()
    store.add_messages("s", [user("1")])
    after = client.time()
    score = client.zscore(f"{prefix}:sessions", "s")
    info = store.session_info("s")
    assert info is not None and info.updated_at.timestamp() == score
    # Times come from the Redis server's clock.
    assert before[0] + before[1] / 1e6 <= score <= after[0] + after[1] / 1e6


def _count_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every command (or pipeline) sent from now on appends to the returned list."""
    sent: list[object] = []
    real = redis.connection.Connection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    return sent


def test_a_run_costs_one_round_trip_per_call_and_an_add_indexes_its_session(
    make: Callable[..., RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    store.add_messages("warm", [user("0")])  # the scripts are loaded
    sent = _count_round_trips(monkeypatch)
    # What a run with memory does: lease, read, one add of the run's items, release.
    assert store.try_lock("s", "owner", 30.0)
    assert store.get_messages("s") == []
    store.add_messages("s", [user("1"), user("2")])
    store.unlock("s", "owner")
    assert len(sent) == 4
    monkeypatch.undo()
    listed = {i.session_id: i.message_count for i in store.list_sessions()}
    assert listed == {"s": 2, "warm": 1}
    # Where the index cannot share the add's script (a Cluster), it is updated right
    # after, and the session is listed all the same.
    store._keyspace.one_server = False
    sent = _count_round_trips(monkeypatch)
    store.add_messages("t", [user("3")])
    assert len(sent) == 2
    monkeypatch.undo()
    assert [i.session_id for i in store.list_sessions()][0] == "t"


def test_connections_in_steady_use_are_not_probed_but_idle_ones_are(
    make: Callable[..., RedisStore],
    client: Any,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentsession.stores.redis import core

    url = services.redis_url()
    store = make(f"{url}{'&' if '?' in url else '?'}client_name={prefix}")
    store.add_messages("s", [user("1")])
    probes: list[object] = []
    real = redis.connection.Connection.can_read

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.client_name == prefix:  # the store's connections only
            probes.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "can_read", counting)
    for _ in range(5):
        assert store.get_messages("s") == [user("1")]
    assert probes == []  # one system call (and GIL release) less per command
    # A connection idle for longer than PROBE_IDLE is checked first: one the server
    # closed meanwhile is replaced, and the call does not fail.
    monkeypatch.setattr(core, "PROBE_IDLE", -1.0)
    ours = [c["id"] for c in client.client_list() if c["name"] == prefix]
    assert ours
    for connection_id in ours:
        client.client_kill_filter(_id=connection_id)
    assert store.get_messages("s") == [user("1")]
    assert probes


def test_paging_through_many_sessions_with_one_timestamp(make: Callable[..., RedisStore]) -> None:
    # More sessions share one updated_at than an index page holds.
    store = make()
    lines = []
    for n in range(620):
        header = {
            "type": "session",
            "version": 1,
            "session_id": f"s{n:03d}",
            "created_at": 1_700_000_000.0,
            "updated_at": 1_700_000_000.0 + (n >= 600),
            "message_count": 0,
            "metadata": {"even": n % 2 == 0},
        }
        lines.append(json.dumps(header) + "\n")
    assert store.import_jsonl(lines) == 620
    everything = [info.session_id for info in store.list_sessions()]
    expected = [f"s{n:03d}" for n in range(619, 599, -1)] + [
        f"s{n:03d}" for n in range(599, -1, -1)
    ]
    assert everything == expected
    for limit, metadata in ((7, None), (250, None), (9, {"even": True})):
        seen: list[str] = []
        cursor = None
        while True:
            page = store.list_sessions_page(limit=limit, cursor=cursor, metadata=metadata)
            seen += [info.session_id for info in page.sessions]
            cursor = page.next_cursor
            if cursor is None:
                break
        wanted = [s for s in expected if metadata is None or int(s[1:]) % 2 == 0]
        assert seen == wanted, (limit, metadata)


# -- clients and errors --------------------------------------------------------------------


def test_a_client_passed_in_is_used_and_left_open(
    make: Callable[..., RedisStore], client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Any] = []
    monkeypatch.setattr(client, "close", lambda: closed.append(client))
    store = make(client)
    assert store.client is client
    store.add_messages("s", [user("1")])
    store.close()
    store.close()
    assert closed == []
    assert client.lrange(f"{store.prefix}:{{s}}:messages", 0, -1)  # the data is there
    with pytest.raises(StoreClosed):
        store.get_messages("s")
    with pytest.raises(StoreClosed):
        store.vacuum()


def test_a_store_made_from_a_url_closes_its_own_client(
    make: Callable[..., RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    own = store.client
    closed: list[Any] = []
    real_close = own.close
    monkeypatch.setattr(own, "close", lambda: closed.append(real_close()))
    store.close()
    store.close()
    assert len(closed) == 1
    with pytest.raises(StoreClosed):
        store.add_messages("s", [user("1")])


def test_a_decode_responses_client_reads_back_the_same(
    make: Callable[..., RedisStore], prefix: str
) -> None:
    text_client = redis.Redis.from_url(services.redis_url(), decode_responses=True)
    try:
        raw, decoded = make(), make(text_client)
        odd = {"role": "user", "content": "lone \ud800 surrogate, 中文 ✓ \u2028 \x00"}
        raw.add_messages("s", [odd, user("2")])
        raw.set_metadata("s", {"title": "中文 ✓ \u2028 title"})
        assert decoded.get_messages("s") == raw.get_messages("s") == [odd, user("2")]
        assert decoded.session_info("s") == raw.session_info("s")
        assert decoded.list_sessions() == raw.list_sessions()
        assert decoded.update_metadata("s", {"n": 1})["title"] == "中文 ✓ \u2028 title"
        assert decoded.pop_message("s") == user("2")
        assert decoded.rewind("s") == [odd]
        first, second = io.StringIO(), io.StringIO()
        raw.add_messages("t", [user("x")])
        raw.export_jsonl(first)
        decoded.export_jsonl(second)
        assert first.getvalue() == second.getvalue()
    finally:
        text_client.close()


def test_an_unreachable_server_is_a_store_error_naming_the_host_only() -> None:
    with pytest.raises(StoreError, match="127.0.0.1:1") as caught:
        RedisStore("redis://user:s3cret-pw@127.0.0.1:1/0")
    assert "s3cret-pw" not in str(caught.value)
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)


def test_bad_urls_and_clients_are_refused() -> None:
    with pytest.raises(ValueError, match="redis://"):
        RedisStore("http://127.0.0.1:6379")
    with pytest.raises(TypeError, match="url"):
        RedisStore(6379)  # type: ignore[arg-type]


def test_driver_errors_map_to_store_errors(
    make: Callable[..., RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()

    def fail(error: Exception) -> Callable[..., Any]:
        def raiser(*args: Any, **kwargs: Any) -> Any:
            raise error

        return raiser

    monkeypatch.setattr(store.client, "lrange", fail(redis.exceptions.BusyLoadingError("loading")))
    with pytest.raises(StoreBusy) as busy:
        store.get_messages("s")
    assert isinstance(busy.value.__cause__, redis.exceptions.BusyLoadingError)
    monkeypatch.setattr(store.client, "llen", fail(redis.exceptions.TimeoutError("slow")))
    with pytest.raises(StoreError, match="127.0.0.1:6379") as timeout:
        store.message_count("s")
    assert isinstance(timeout.value.__cause__, redis.exceptions.TimeoutError)


def test_search_is_not_supported_and_says_where_it_is(make: Callable[..., RedisStore]) -> None:
    store = make()
    with pytest.raises(NotSupportedError) as caught:
        store.search("fox", session_id="s", limit=5)
    message = str(caught.value)
    for name in ("RedisStore", "full-text search", "SQLiteStore", "PostgresStore"):
        assert name in message
    with pytest.raises(TypeError, match="query"):
        store.search(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        store.search("fox", limit=0)


def test_a_missing_redis_package_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None  # what an environment without the package sees
        from agentsession import MissingDependencyError
        for load in (
            lambda: __import__("agentsession.stores.redis"),
            lambda: __import__("agentsession").RedisSessionMemory("redis://127.0.0.1"),
            lambda: __import__("agentsession").RedisStore,
        ):
            try:
                load()
            except MissingDependencyError as exc:
                assert "pip install 'agentsession[redis]'" in str(exc), exc
                assert isinstance(exc, ImportError)
            else:
                raise SystemExit("no MissingDependencyError")
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# -- atomicity across threads and processes ---------------------------------------------------


def test_concurrent_metadata_updates_lose_nothing(make: Callable[..., RedisStore]) -> None:
    store = make()

    def work(n: int) -> None:
        for i in range(15):
            store.update_metadata("s", {f"{n}.{i}": i})

    run_in_threads(8, work)
    info = store.session_info("s")
    assert info is not None
    assert info.metadata == {f"{n}.{i}": i for n in range(8) for i in range(15)}


def test_rewind_under_concurrent_adds_returns_exactly_what_it_removed(
    make: Callable[..., RedisStore],
) -> None:
    store = make()
    removed: list[dict[str, Any]] = []

    def work(n: int) -> None:
        for i in range(40):
            if n == 0:
                removed.extend(store.rewind("s"))
            else:
                store.add_messages("s", [user(f"{n}.{i}"), {"role": "assistant", "content": "ok"}])

    run_in_threads(4, work)
    kept = store.get_messages("s")
    texts = [m["content"] for m in kept + removed if m["role"] == "user"]
    assert sorted(texts) == sorted(f"{n}.{i}" for n in range(1, 4) for i in range(40))
    assert len(kept) + len(removed) == 2 * 3 * 40
    for first, second in zip(kept[::2], kept[1::2], strict=True):  # whole turns only
        assert first["role"] == "user" and second["role"] == "assistant"


def test_large_batches_are_stored_whole_and_in_order(make: Callable[..., RedisStore]) -> None:
    store = make()
    messages = [user(str(i)) for i in range(2_500)]
    store.add_messages("s", messages)
    assert store.get_messages("s") == messages
    assert store.get_messages("s", limit=3) == messages[-3:]
    buffer = io.StringIO()
    store.export_jsonl(buffer)
    store.import_jsonl(io.StringIO(buffer.getvalue()), on_conflict="replace")
    assert store.get_messages("s") == messages


def test_imported_times_round_trip_exactly(
    make: Callable[..., RedisStore], client: Any, prefix: str
) -> None:
    store = make()
    times = [0.1, 1_700_000_000.123456789, 1e-7, 2_000_000_000.000001]
    header = {
        "type": "session",
        "version": 1,
        "session_id": "s",
        "created_at": times[0],
        "updated_at": times[1],
        "message_count": 2,
        "metadata": {},
    }
    lines = [json.dumps(header)]
    for seq, stamp in enumerate(times[2:], 1):
        line = {"type": "message", "seq": seq, "created_at": stamp, "message": user(str(seq))}
        lines.append(json.dumps(line))
    store.import_jsonl(lines)
    buffer = io.StringIO()
    store.export_jsonl(buffer)
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [records[0]["created_at"], records[0]["updated_at"]] == times[:2]
    assert [record["created_at"] for record in records[1:-1]] == times[2:]
    assert client.zscore(f"{prefix}:sessions", "s") == times[1]  # the index's order too


def _add_in_child(url: str, prefix: str, n: int, barrier: Any) -> None:
    with RedisStore(url, prefix=prefix) as store:
        barrier.wait()
        for i in range(25):
            store.add_messages("shared", [user(f"{n}.{i}.{part}") for part in "abc"])


def test_processes_adding_at_once_keep_every_batch_whole(
    make: Callable[..., RedisStore], prefix: str
) -> None:
    import multiprocessing

    # fork where there is one: a spawned child spends seconds importing the Agents SDK.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(4)
    url = services.redis_url()
    procs = [
        context.Process(target=_add_in_child, args=(url, prefix, n, barrier)) for n in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    texts = [m["content"] for m in make().get_messages("shared")]
    assert len(texts) == 4 * 25 * 3
    for start in range(0, len(texts), 3):
        batch = texts[start : start + 3]
        assert [t.rsplit(".", 1)[1] for t in batch] == ["a", "b", "c"]
        assert len({t.rsplit(".", 1)[0] for t in batch}) == 1
    for n in range(4):  # each process's batches in its own order
        mine = [t for t in texts[::3] if t.startswith(f"{n}.")]
        assert mine == [f"{n}.{i}.a" for i in range(25)]
