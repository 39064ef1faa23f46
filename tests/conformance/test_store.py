"""What every blocking Store promises, called from plain threads with no event loop."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentsession import NotSupportedError, SessionBusy, SessionInfo, StoreClosed
from tests.conftest import ENGINES, STORES, run_in_threads

#: Stores whose engine has full-text search (Redis has none; see test_search_not_supported).
SEARCH_STORES = [param for param in STORES if ENGINES[param.values[0]] != "redis"]

#: Raw query syntax per engine: a prefix query that finds "fox", and queries it refuses.
RAW_PREFIX = {"sqlite": "fo*", "postgres": "fo:*"}
RAW_BAD = {
    "sqlite": ['"unbalanced', "a AND", "(fox", "NEAR(", "nosuch:fox"],
    "postgres": ["'unbalanced", "a &", "(fox", "fox <->", "nosuch:fox"],
}


@pytest.fixture(params=SEARCH_STORES)
def search_store(request: pytest.FixtureRequest, store_factory: Any) -> Any:
    """A store of each kind that has full-text search."""
    store = store_factory(request.param)
    store.engine = ENGINES[request.param]
    return store


def _positions_of(store: Any, session_id: str, text: str) -> list[int]:
    """1-based positions of the messages of ``session_id`` whose content is ``text``."""
    messages = store.get_messages(session_id)
    return [n for n, m in enumerate(messages, 1) if m.get("content") == text]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def test_get_messages_limit_is_newest_n_oldest_first(store: Any) -> None:
    store.add_messages("s", [user(str(i)) for i in range(6)])
    assert store.get_messages("s", limit=2) == [user("4"), user("5")]
    assert store.get_messages("s") == [user(str(i)) for i in range(6)]


def test_pop_message_returns_newest_until_empty(store: Any) -> None:
    store.add_messages("s", [user("1"), user("2")])
    assert store.pop_message("s") == user("2")
    store.add_messages("s", [user("3")])
    assert store.get_messages("s") == [user("1"), user("3")]
    assert store.pop_message("s") == user("3")
    assert store.pop_message("s") == user("1")
    assert store.pop_message("s") is None
    assert store.pop_message("never") is None


def test_list_sessions_newest_activity_first_with_counts(store: Any) -> None:
    store.add_messages("old", [user("1")])
    store.add_messages("new", [user("1"), user("2")])
    store.add_messages("old", [user("2"), user("3")])
    sessions = store.list_sessions()
    assert [s.session_id for s in sessions] == ["old", "new"]
    assert all(isinstance(s, SessionInfo) for s in sessions)
    assert sessions[0].message_count == 3 and sessions[1].message_count == 2
    assert sessions[0].created_at <= sessions[0].updated_at
    store.clear_session("old")
    assert [s.session_id for s in store.list_sessions()] == ["new"]


@pytest.mark.parametrize(
    ("session_id", "error"),
    [("", ValueError), (None, TypeError), (42, TypeError), (b"id", TypeError)],
)
def test_bad_session_ids_are_refused(store: Any, session_id: Any, error: type) -> None:
    with pytest.raises(error, match="session_id"):
        store.add_messages(session_id, [user("x")])
    with pytest.raises(error, match="session_id"):
        store.get_messages(session_id)
    assert store.list_sessions() == []


@pytest.mark.parametrize(
    ("limit", "error"), [(-1, ValueError), ("3", TypeError), (True, TypeError)]
)
def test_bad_limits_are_refused(store: Any, limit: Any, error: type) -> None:
    with pytest.raises(error, match="limit"):
        store.get_messages("s", limit=limit)


@pytest.mark.parametrize(
    "messages",
    ["not a list", [user("ok"), "a string"], [user("ok"), {"content": {1, 2}}], [{1: "int key"}]],
    ids=["str", "str-item", "set-value", "int-key"],
)
def test_bad_messages_raise_type_error_and_store_nothing(store: Any, messages: Any) -> None:
    with pytest.raises(TypeError, match="message"):
        store.add_messages("s", messages)
    assert store.get_messages("s") == []
    assert store.list_sessions() == []


def test_threads_adding_at_once_keep_every_batch_whole(store: Any) -> None:
    def writer(n: int) -> None:
        for batch in range(25):
            store.add_messages("shared", [user(f"{n}:{batch}:{i}") for i in range(2)])
            store.add_messages(f"own-{n}", [user(str(batch))])

    run_in_threads(8, writer)
    texts = [m["content"] for m in store.get_messages("shared")]
    assert len(texts) == 8 * 25 * 2
    for i in range(0, len(texts), 2):
        assert texts[i].endswith(":0") and texts[i + 1] == texts[i][:-1] + "1"
    for n in range(8):
        assert store.get_messages(f"own-{n}") == [user(str(b)) for b in range(25)]


def test_use_after_close_raises_store_closed(store: Any) -> None:
    store.add_messages("s", [user("1")])
    store.close()
    store.close()
    with pytest.raises(StoreClosed):
        store.get_messages("s")
    with pytest.raises(StoreClosed):
        store.add_messages("s", [user("2")])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_store_created_before_fork_works_in_the_child(store: Any, store_kind: str) -> None:
    store.add_messages("s", [user("parent")])  # the store now holds a connection
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with pool threads running
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        try:
            store.add_messages("s", [user("child")])
            code = 0 if len(store.get_messages("s")) == 2 else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # A private in-memory database was copied into the child; every other is shared.
    shared = [] if store_kind == "sqlite-memory" else [user("child")]
    assert store.get_messages("s") == [user("parent"), *shared]
    store.add_messages("s", [user("parent again")])  # the parent's connections still work
    assert store.get_messages("s") == [user("parent"), *shared, user("parent again")]


def test_a_limit_larger_than_a_short_session_returns_it_once(store: Any) -> None:
    store.add_messages("s", [user("1"), user("2"), user("3")])
    for limit in (3, 4, 5, 100):
        assert store.get_messages("s", limit=limit) == [user("1"), user("2"), user("3")]


def test_every_limit_returns_a_tool_safe_window(store: Any) -> None:
    def call(call_id: str) -> dict[str, Any]:
        return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}

    def output(call_id: str) -> dict[str, Any]:
        return {"type": "function_call_output", "call_id": call_id, "output": "x"}

    history = [
        user("q1"),
        {"type": "reasoning", "id": "r", "summary": []},
        call("a"),
        call("b"),
        output("a"),
        output("b"),
        user("q2"),
        call("c"),
        output("c"),
    ]
    store.add_messages("s", history)
    for limit in range(1, len(history) + 1):
        window = store.get_messages("s", limit=limit)
        calls = {i["call_id"] for i in window if i.get("type") == "function_call"}
        outputs = {i["call_id"] for i in window if i.get("type") == "function_call_output"}
        assert calls == outputs, (limit, window)
        assert window == history[len(history) - len(window) :] or window[0] != history[2]
        assert len(window) <= limit
    assert store.get_messages("s") == history  # nothing was deleted


# -- history management (issue 4): sessions, metadata, search, fork, retention, JSONL ------

_HOSTILE_QUERIES = [
    '"',
    '""',
    "'",
    "(",
    ")",
    "fox)",
    "AND",
    "OR",
    "NOT",
    "a AND",
    "OR fox",
    "NEAR(fox",
    "fox*",
    "*",
    "^fox",
    "text:fox",
    "-fox",
    "fox + dog",
    '"unbalanced fox',
    "{fox}",
    "[fox]",
    "fox\x00dog",
    "   ",
    "",
    "\u2028",
    "ö é 中文",
]


def _jsonl_session(
    session_id: str, updated_at: float, texts: list[str], metadata: dict[str, Any] | None = None
) -> list[str]:
    """The JSONL lines of one session last active at ``updated_at`` (Unix seconds)."""
    header = {
        "type": "session",
        "version": 1,
        "session_id": session_id,
        "created_at": updated_at - 1,
        "updated_at": updated_at,
        "message_count": len(texts),
        "metadata": metadata or {},
    }
    lines = [json.dumps(header)]
    for seq, text in enumerate(texts, 1):
        lines.append(
            json.dumps(
                {"type": "message", "seq": seq, "created_at": updated_at, "message": user(text)}
            )
        )
    return [line + "\n" for line in lines]


def _export(store: Any, **kwargs: Any) -> str:
    buffer = io.StringIO()
    store.export_jsonl(buffer, **kwargs)
    return buffer.getvalue()


def test_the_store_has_history_management(store: Any) -> None:
    for name in (
        "list_sessions_page",
        "session_info",
        "set_metadata",
        "update_metadata",
        "search",
        "fork",
        "prune",
        "expire_idle",
        "vacuum",
        "export_jsonl",
        "import_jsonl",
    ):
        assert callable(getattr(store, name, None)), name


def test_metadata_set_update_remove_and_session_info(store: Any) -> None:
    assert store.session_info("s") is None
    store.add_messages("s", [user("1"), user("2")])
    before = store.session_info("s")
    assert before.metadata == {} and before.message_count == 2
    store.set_metadata("s", {"user_id": "u1", "tags": ["a", "b"], "n": 1})
    assert store.update_metadata("s", {"title": "Trip", "n": 2}, remove=["tags"]) == {
        "user_id": "u1",
        "n": 2,
        "title": "Trip",
    }
    info = store.session_info("s")
    assert info.metadata == {"user_id": "u1", "n": 2, "title": "Trip"}
    assert info.updated_at == before.updated_at  # metadata is not activity
    assert info.created_at == before.created_at and info.message_count == 2
    assert store.list_sessions()[0].metadata == info.metadata
    store.set_metadata("s", {})
    assert store.session_info("s").metadata == {}
    assert store.get_messages("s") == [user("1"), user("2")]


def test_metadata_creates_an_empty_session_record(store: Any) -> None:
    store.update_metadata("new", {"user_id": "u9"})
    info = store.session_info("new")
    assert info.message_count == 0 and info.metadata == {"user_id": "u9"}
    store.add_messages("new", [user("hi")])
    assert store.session_info("new").message_count == 1
    assert store.get_messages("new") == [user("hi")]


@pytest.mark.parametrize(
    "bad", ["text", ["list"], {1: "int key"}, {"x": {1, 2}}, {"x": float("nan")}, None]
)
def test_bad_metadata_raises_type_error_and_changes_nothing(store: Any, bad: Any) -> None:
    store.set_metadata("s", {"keep": True})
    with pytest.raises(TypeError, match="metadata|changes"):
        store.set_metadata("s", bad)
    with pytest.raises(TypeError, match="metadata|changes"):
        store.update_metadata("s", bad)
    assert store.session_info("s").metadata == {"keep": True}
    with pytest.raises(ValueError, match="session_id"):
        store.set_metadata("", {})


def test_paging_walks_every_session_once_newest_first(store: Any) -> None:
    lines: list[str] = []
    for n in range(23):
        # Five share one timestamp: ties must page by the tie-breaker, not drop or repeat.
        lines += _jsonl_session(f"s{n:02d}", 1_700_000_000.0 + (n if n >= 5 else 0), ["x"])
    store.import_jsonl(lines)
    expected = [info.session_id for info in store.list_sessions()]
    assert len(expected) == 23 and expected[0] == "s22"
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_sessions_page(limit=4, cursor=cursor)
        assert len(page.sessions) <= 4
        seen += [info.session_id for info in page.sessions]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected and pages == 6
    assert store.list_sessions_page(limit=23).next_cursor is None
    with pytest.raises(ValueError, match="cursor"):
        store.list_sessions_page(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        store.list_sessions_page(limit=0)


def test_metadata_filter_matches_key_values_by_json_type(store: Any) -> None:
    store.set_metadata("a", {"user_id": "u1", "n": 1, "ok": True, "a.b": 'q"'})
    store.set_metadata("b", {"user_id": "u1", "n": 2, "ok": False, "gone": None})
    store.set_metadata("c", {"user_id": "u2", "n": 1.0, "ok": 1})

    def ids(**kwargs: Any) -> set[str]:
        return {info.session_id for info in store.list_sessions(**kwargs)}

    assert ids(metadata={"user_id": "u1"}) == {"a", "b"}
    assert ids(metadata={"user_id": "u1", "n": 2}) == {"b"}
    assert ids(metadata={"n": 1}) == {"a", "c"}
    assert ids(metadata={"ok": True}) == {"a"}  # not c's 1
    assert ids(metadata={"ok": 1}) == {"c"}
    assert ids(metadata={"gone": None}) == {"b"}
    assert ids(metadata={"a.b": 'q"'}) == {"a"}
    assert ids(metadata={"user_id": "nobody"}) == set()
    assert ids(metadata={}) == {"a", "b", "c"}
    page = store.list_sessions_page(limit=1, metadata={"user_id": "u1"})
    rest = store.list_sessions_page(limit=5, cursor=page.next_cursor, metadata={"user_id": "u1"})
    assert {i.session_id for i in page.sessions + rest.sessions} == {"a", "b"}
    with pytest.raises(TypeError, match="metadata filter"):
        store.list_sessions(metadata={"user_id": ["u1"]})


def test_search_ranks_snippets_positions_and_filters(search_store: Any) -> None:
    store = search_store
    store.add_messages("a", [user("hello there"), user("a fox, a fox, the same fox again")])
    store.add_messages("b", [user("a long message that mentions a fox only once " * 3)])
    store.add_messages(
        "c", [{"type": "function_call", "call_id": "1", "name": "find_fox", "arguments": "{}"}]
    )
    hits = store.search("fox")
    # bm25: three mentions in a short message beat one in a short tool call, which beats
    # one in a long message; tool call names are searchable.
    assert [(h.session_id, h.position) for h in hits] == [("a", 2), ("c", 1), ("b", 1)]
    assert hits[0].rank <= hits[1].rank <= hits[2].rank
    assert hits[0].message == user("a fox, a fox, the same fox again")
    assert "[fox]" in hits[0].snippet
    assert [(h.session_id, h.position) for h in store.search("FOX", session_id="b")] == [("b", 1)]
    assert len(store.search("fox", limit=1)) == 1
    assert store.search("hello fox") == []  # every word must be in one message
    assert [h.position for h in store.search("hello THERE")] == [2 - 1]
    assert store.search("fox", highlight=("<b>", "</b>"))[0].snippet.count("<b>fox</b>") >= 1
    assert [h.session_id for h in store.search("find_fox", raw=True, session_id="c")] == ["c"]
    prefix = RAW_PREFIX[store.engine]
    assert [h.position for h in store.search(prefix, raw=True, session_id="a")] == [2]


@pytest.mark.parametrize("query", _HOSTILE_QUERIES)
def test_search_treats_any_text_as_plain_words(search_store: Any, query: str) -> None:
    store = search_store
    store.add_messages("s", [user('fox AND dog (or not) "quoted" text:fox')])
    hits = store.search(query)
    assert all(h.session_id == "s" for h in hits)
    assert store.search("AND") and store.search('"quoted"') and store.search("(or")


@pytest.mark.parametrize("case", range(5))
def test_raw_search_syntax_errors_are_value_errors(search_store: Any, case: int) -> None:
    store = search_store
    store.add_messages("s", [user("fox")])
    query = RAW_BAD[store.engine][case]
    with pytest.raises(ValueError, match="query"):
        store.search(query, raw=True)


def test_search_not_supported_is_a_clear_error(store: Any, store_kind: str) -> None:
    store.add_messages("s", [user("fox")])
    if ENGINES[store_kind] != "redis":
        assert [h.position for h in store.search("fox")] == [1]
        return
    with pytest.raises(NotSupportedError, match="search"):
        store.search("fox")
    assert isinstance(NotSupportedError("x"), NotImplementedError)


def test_search_index_follows_pop_clear_fork_and_prune(search_store: Any) -> None:
    store = search_store
    store.add_messages("s", [user("alpha"), user("beta"), user("gamma")])
    assert store.pop_message("s") == user("gamma")
    assert store.search("gamma") == []
    store.fork("s", "t")
    assert {h.session_id for h in store.search("beta")} == {"s", "t"}
    store.clear_session("t")
    assert [h.session_id for h in store.search("beta")] == ["s"]
    store.prune(keep_last=1)
    assert store.search("alpha") == []
    assert [(h.session_id, h.position) for h in store.search("beta")] == [("s", 1)]
    store.prune(older_than=timedelta(0))
    assert store.search("beta") == []


def test_fork_copies_history_metadata_and_timestamps(store: Any) -> None:
    store.add_messages("s", [user("1"), user("2")])
    store.add_messages("s", [user("3")])
    store.set_metadata("s", {"user_id": "u1"})
    assert store.fork("s", "half", at=2) == 2
    assert store.get_messages("half") == [user("1"), user("2")]
    assert store.session_info("half").metadata == {"user_id": "u1"}
    assert store.fork("s", "all") == 3 and store.get_messages("all") == store.get_messages("s")
    assert store.fork("s", "none", at=0) == 0 and store.session_info("none").message_count == 0
    store.set_metadata("empty", {"mine": 1})  # a record with no messages may be forked into
    assert store.fork("s", "empty", at=1) == 1
    assert store.session_info("empty").metadata == {"user_id": "u1"}
    assert store.get_messages("empty") == [user("1")]
    store.add_messages("half", [user("other")])
    assert store.get_messages("s") == [user("1"), user("2"), user("3")]
    assert store.get_messages("half")[-1] == user("other")
    with pytest.raises(ValueError, match="'half' already has 3 messages"):
        store.fork("s", "half")
    with pytest.raises(ValueError, match="'missing'"):
        store.fork("missing", "x")
    with pytest.raises(ValueError, match="at=4"):
        store.fork("s", "x", at=4)
    with pytest.raises(ValueError, match="itself"):
        store.fork("s", "s")
    assert store.session_info("x") is None


def test_prune_deletes_idle_sessions_whole_in_bounded_batches(store: Any) -> None:
    old = time.time() - 10 * 86400
    store.import_jsonl(
        _jsonl_session("old1", old, [f"m{i}" for i in range(5)])
        + _jsonl_session("old2", old + 1, ["x", "y"])
        + _jsonl_session("empty", old, [])
    )
    store.add_messages("recent", [user("keep")])
    assert store.prune(older_than=timedelta(days=1), dry_run=True) == 7
    assert store.session_info("old1") is not None
    batches: list[int] = []
    assert store.prune(older_than=timedelta(days=1), batch=2, progress=batches.append) == 7
    assert len(batches) >= 4 and max(batches) <= 2 and sum(batches) == 7
    assert [i.session_id for i in store.list_sessions()] == ["recent"]
    cutoff = datetime.now(timezone.utc) + timedelta(seconds=5)
    assert store.prune(older_than=cutoff) == 1 and store.list_sessions() == []


def test_prune_keep_last_trims_and_renumbers(store: Any) -> None:
    store.add_messages("long", [user(str(i)) for i in range(7)])
    store.add_messages("short", [user("a"), user("b")])
    batches: list[int] = []
    assert store.prune(keep_last=2, batch=2, progress=batches.append) == 5
    assert max(batches) <= 2 and len(batches) >= 3
    assert store.get_messages("long") == [user("5"), user("6")]
    assert store.get_messages("short") == [user("a"), user("b")]
    assert store.message_count("long") == 2
    # positions are dense again: appends, pops and positions all line up
    store.add_messages("long", [user("7")])
    assert _positions_of(store, "long", "7") == [3]
    assert store.pop_message("long") == user("7")
    assert store.fork("long", "copy", at=1) == 1 and store.get_messages("copy") == [user("5")]
    assert store.prune(keep_last=2) == 0


def test_prune_skips_sessions_a_run_holds(store: Any) -> None:
    store.add_messages("busy", [user(str(i)) for i in range(3)])
    assert store.try_lock("busy", "run-1", 60)
    assert store.prune(keep_last=1) == 0
    assert store.prune(older_than=timedelta(0)) == 0
    store.unlock("busy", "run-1")
    assert store.prune(keep_last=1) == 2


#: The calls that change (or copy) a session, each as (name, call on session "busy").
EDITS = [
    ("clear_session", lambda store: store.clear_session("busy")),
    ("rewind", lambda store: store.rewind("busy")),
    ("truncate", lambda store: store.truncate("busy", 1)),
    ("fork", lambda store: store.fork("busy", "copy")),
]


@pytest.mark.parametrize(("name", "edit"), EDITS, ids=[name for name, _ in EDITS])
def test_edits_of_a_session_a_run_holds_raise_session_busy_after_lock_timeout(
    store: Any, name: str, edit: Any
) -> None:
    turn = [user("question"), assistant("answer")]
    store.add_messages("busy", turn)
    assert store.try_lock("busy", "run-1", 60)
    store.lock_timeout = 0
    with pytest.raises(SessionBusy, match="'busy'"):
        edit(store)
    assert store.get_messages("busy") == turn and store.session_info("copy") is None
    assert store.try_lock("busy", "run-1", 60)  # the run still holds it
    store.unlock("busy", "run-1")
    edit(store)
    assert store.try_lock("busy", "run-2", 60)  # the edit gave its lease back


@pytest.mark.parametrize(("name", "edit"), EDITS, ids=[name for name, _ in EDITS])
def test_edits_wait_for_the_run_holding_the_session(store: Any, name: str, edit: Any) -> None:
    """An edit started while a run holds the session happens after the run's turn."""
    store.add_messages("busy", [user("first"), assistant("one")])
    assert store.try_lock("busy", "run-1", 60)
    refused = threading.Event()
    take = store._lock

    def watched(*args: Any) -> bool:
        taken: bool = take(*args)
        if not taken:
            refused.set()
        return taken

    store._lock = watched
    editor = threading.Thread(target=edit, args=(store,))
    editor.start()
    try:
        assert refused.wait(10), f"{name} did not ask for the run's lease"
        store.add_messages("busy", [user("second"), assistant("two")])  # the run's turn
    finally:
        store.unlock("busy", "run-1")
        editor.join(10)
    expected = {
        "clear_session": [],
        "rewind": [user("first"), assistant("one")],
        "truncate": [user("first")],
        "fork": [user("first"), assistant("one"), user("second"), assistant("two")],
    }[name]
    assert store.get_messages("copy" if name == "fork" else "busy") == expected


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ValueError),
        ({"keep_last": -1}, ValueError),
        ({"keep_last": "2"}, TypeError),
        ({"keep_last": 1, "batch": 0}, ValueError),
        ({"older_than": 5}, TypeError),
        ({"older_than": timedelta(days=-1)}, ValueError),
        ({"older_than": datetime(2020, 1, 1)}, ValueError),
    ],
)
def test_bad_prune_arguments_are_refused(store: Any, kwargs: Any, error: type) -> None:
    store.add_messages("s", [user("1")])
    with pytest.raises(error):
        store.prune(**kwargs)
    assert store.message_count("s") == 1


def test_expire_idle_counts_sessions_and_vacuum_runs(store: Any) -> None:
    store.import_jsonl(_jsonl_session("idle", time.time() - 3600, ["a", "b"]))
    store.add_messages("live", [user("c")])
    assert store.expire_idle(timedelta(minutes=30), batch=1) == 1
    assert [i.session_id for i in store.list_sessions()] == ["live"]
    with pytest.raises(ValueError, match="ttl"):
        store.expire_idle(timedelta(0))
    store.vacuum()
    assert store.get_messages("live") == [user("c")]


def _fill_varied(store: Any) -> None:
    store.add_messages("s1", [user("héllo ✓ 中文"), user("line\nbreak \u2028 sep")])
    store.add_messages(
        "s2",
        [
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"x": 1}'},
            {"type": "function_call_output", "call_id": "c", "output": "0.1"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "n", "x": 1.5e-07}]},
        ],
    )
    store.set_metadata("s2", {"user_id": "u1", "nested": {"a": [1, 2.5, None, True]}})
    store.set_metadata("meta-only", {"t": 1})


def test_export_import_round_trip_is_exact(store: Any, store_kind: str, store_factory: Any) -> None:
    _fill_varied(store)
    first = _export(store)
    lines = first.split("\n")
    assert lines[-1] == "" and len(lines) == 1 + 3 + 5 + 1
    assert all(json.loads(line)["type"] in ("session", "message") for line in lines[:-2])
    assert json.loads(lines[-2]) == {"type": "end", "sessions": 3, "records": 8}
    assert json.loads(lines[0])["version"] == 1
    copy = store_factory(store_kind)
    assert copy.import_jsonl(io.StringIO(first)) == 3
    assert _export(copy) == first
    for info in store.list_sessions():
        assert copy.session_info(info.session_id) == info
        assert copy.get_messages(info.session_id) == store.get_messages(info.session_id)
    copy.add_messages("s1", [user("next")])
    assert copy.get_messages("s1")[-1] == user("next") and copy.message_count("s1") == 3
    start = first.index('{"type":"session","version":1,"session_id":"s2"')
    end = first.index('{"type":"session"', start + 1)
    trailer = '{"type":"end","sessions":1,"records":4}\n'
    assert _export(store, session_ids=["s2"]) == first[start:end] + trailer
    with pytest.raises(ValueError, match="'nope'"):
        _export(store, session_ids=["s1", "nope"])


def test_an_export_cut_short_is_refused_on_import(store: Any, store_factory: Any) -> None:
    _fill_varied(store)
    lines = io.StringIO(_export(store)).readlines()  # split at "\n" only
    header_of_s2 = next(n for n, line in enumerate(lines) if '"session_id":"s2"' in line)
    # cut at a session boundary: only the trailer can tell
    cut = lines[:header_of_s2] + lines[-1:]
    with pytest.raises(ValueError, match=r"line \d+: the export's end line says .* incomplete"):
        store_factory("sqlite-memory").import_jsonl(cut)
    # cut in the middle of a line (an interrupted copy)
    with pytest.raises(ValueError, match="line 3: the file ends in the middle of a record"):
        store_factory("sqlite-memory").import_jsonl([*lines[:2], lines[2][:10]])
    # a line after the trailer
    with pytest.raises(ValueError, match="a line after the export's end"):
        store_factory("sqlite-memory").import_jsonl([*lines, lines[0]])
    # cut at a session boundary before the trailer: the headers promised one
    with pytest.raises(ValueError, match=r"line \d+: the file ends before the export's end"):
        store_factory("sqlite-memory").import_jsonl(lines[:header_of_s2])
    # an export written before the trailer existed imports as before
    older = [line.replace(',"end_line":true}', "}") for line in lines[:-1]]
    assert older != lines[:-1] and store_factory("sqlite-memory").import_jsonl(older) == 3


def test_import_conflicts_error_skip_replace(store: Any) -> None:
    store.add_messages("s", [user("stored")])
    lines = _jsonl_session("new", 1_700_000_000.0, ["n"]) + _jsonl_session(
        "s", 1_700_000_000.0, ["from file"]
    )
    with pytest.raises(ValueError, match="'s'"):
        store.import_jsonl(lines)
    assert store.get_messages("s") == [user("stored")]
    assert store.get_messages("new") == [user("n")]  # the session before it stays imported
    store.clear_session("new")
    assert store.import_jsonl(lines, on_conflict="skip") == 1
    assert store.get_messages("s") == [user("stored")]
    assert store.import_jsonl(lines, on_conflict="replace") == 2
    assert store.get_messages("s") == [user("from file")]
    with pytest.raises(ValueError, match="on_conflict"):
        store.import_jsonl(lines, on_conflict="merge")


_GOOD = _jsonl_session("bad", 1_700_000_000.0, ["one", "two"])


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        ([_GOOD[0], "{not json\n", _GOOD[2]], 2),
        ([_GOOD[0], _GOOD[1], '{"type": "message", "seq": 3, "created_at": 1, "message": {}}'], 3),
        ([_GOOD[0], _GOOD[1]], 1),  # the header promises two messages
        ([_GOOD[0], _GOOD[1], _GOOD[2], _GOOD[2]], 4),
        ([_GOOD[0], _GOOD[1], _GOOD[2].replace('"message": {', '"message": [{')[:-2] + "]}\n"], 3),
        (
            [
                _GOOD[0],
                _GOOD[1],
                _GOOD[2].replace('"created_at": ', '"created_at": "')[:0] + "[]\n",
            ],
            3,
        ),
        ([_GOOD[0].replace('"version": 1', '"version": 2'), _GOOD[1], _GOOD[2]], 1),
        ([_GOOD[0].replace('"metadata": {}', '"metadata": []'), _GOOD[1], _GOOD[2]], 1),
        (
            [
                _GOOD[0],
                _GOOD[1].replace('"created_at": 1700000000.0', '"created_at": NaN'),
                _GOOD[2],
            ],
            2,
        ),
    ],
    ids=[
        "json",
        "seq-gap",
        "too-few",
        "seq-repeat",
        "not-object",
        "not-record",
        "version",
        "metadata",
        "nan",
    ],
)
def test_bad_lines_name_the_line_and_store_nothing_of_the_session(
    store: Any, lines: list[str], line: int
) -> None:
    before = _jsonl_session("fine", 1_700_000_000.0, ["ok"])
    with pytest.raises(ValueError, match=f"line {line + len(before)}"):
        store.import_jsonl(before + lines)
    assert store.session_info("bad") is None and store.get_messages("bad") == []
    assert store.get_messages("fine") == [user("ok")]


def test_a_message_line_before_any_header_is_refused(store: Any) -> None:
    with pytest.raises(ValueError, match="line 2: a message line before any session header"):
        store.import_jsonl(["\n", _GOOD[1], *_GOOD])
    assert store.list_sessions() == []


def test_history_is_reachable_through_the_async_adapter(store: Any) -> None:
    from agentsession import StoreMemory

    async def main() -> None:
        memory = StoreMemory(store)
        await memory.add_messages("s", [user("async fox")])
        await memory.update_metadata("s", {"k": "v"})
        assert (await memory.session_info("s")).metadata == {"k": "v"}
        assert [m["content"] for m in await memory.get_messages("s")] == ["async fox"]
        assert (await memory.list_sessions_page(limit=1)).sessions[0].session_id == "s"
        assert await memory.fork("s", "t") == 1
        buffer = io.StringIO()
        assert await memory.export_jsonl(buffer) == 2
        assert await memory.import_jsonl(io.StringIO(buffer.getvalue()), on_conflict="skip") == 0
        assert await memory.prune(keep_last=0) == 2
        assert await memory.expire_idle(timedelta(days=1)) == 0

    asyncio.run(main())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from('"()*:^-+ ANDORNT')))
def test_search_never_raises_on_any_text(search_store: Any, query: str) -> None:
    store = search_store
    if store.message_count("s") == 0:
        store.add_messages("s", [user("fox AND dog (or not)")])
    for hit in store.search(query):
        assert hit.session_id == "s"


# -- one contract: the same bad input gets the same exception on every engine -------------


def _another(store: Any, store_kind: str, **kwargs: Any) -> Any:
    """A store of ``store``'s kind on the same database / schema / key prefix."""
    from tests import services

    engine = ENGINES[store_kind]
    if store_kind == "sqlite-memory":
        return type(store)(**kwargs)
    if store_kind == "sqlite-file":
        return type(store)(store.path, **kwargs)
    if engine == "postgres":
        return type(store)(services.postgres_dsn(), schema=store.schema, **kwargs)
    url = services.redis_cluster_url() if store_kind == "redis-cluster" else services.redis_url()
    return type(store)(url, prefix=store.prefix, **kwargs)


@pytest.mark.parametrize(
    ("ttl", "error"),
    [(5, TypeError), (5.0, TypeError), ("1h", TypeError), (timedelta(0), ValueError)],
)
def test_a_bad_ttl_is_refused_by_every_constructor(
    store: Any, store_kind: str, ttl: Any, error: type
) -> None:
    with pytest.raises(error, match="ttl"):
        _another(store, store_kind, ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        _another(store, store_kind, ttl=timedelta(seconds=-1))


def test_a_failed_expiry_after_a_committed_add_is_logged_not_raised(
    store: Any, store_kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from agentsession import StoreError

    with_ttl = _another(store, store_kind, ttl=timedelta(days=1))
    try:

        def fail(ttl: timedelta) -> None:
            raise StoreError("the expiry failed")

        monkeypatch.setattr(with_ttl, "_expire", fail)
        with caplog.at_level("WARNING", logger="agentsession"):
            with_ttl.add_messages("s", [user("kept")])
        assert with_ttl.get_messages("s") == [user("kept")]
        assert "the expiry failed" in caplog.text
    finally:
        with_ttl.close()


@pytest.mark.parametrize(
    ("metadata", "bad"),
    [
        ({"k": "\ud800"}, "\ud800"),
        ({"\udfff": "v"}, "\udfff"),
        ({"nested": {"list": ["ok", "x\udcff"]}}, "x\udcff"),
    ],
    ids=["value", "key", "nested"],
)
def test_metadata_with_a_lone_surrogate_is_refused_by_name(
    store: Any, metadata: Any, bad: str
) -> None:
    store.set_metadata("s", {"keep": True})
    for call in (
        lambda: store.set_metadata("s", metadata),
        lambda: store.update_metadata("s", metadata),
        lambda: store.set_metadata("fresh", metadata),
    ):
        with pytest.raises(ValueError, match="lone surrogate") as caught:
            call()
        assert repr(bad) in str(caught.value)
    with pytest.raises(ValueError, match="lone surrogate"):
        store.list_sessions(metadata={"k": "\ud800"})
    with pytest.raises(ValueError, match="remove"):
        store.update_metadata("s", {}, remove=["\ud800"])
    assert store.session_info("s").metadata == {"keep": True}
    assert store.session_info("fresh") is None


def test_a_message_with_a_lone_surrogate_reads_back_identical(store: Any) -> None:
    # The one rule for messages (see _serialize.encode_messages): a lone surrogate is
    # stored as a \u escape of the JSON text, on every engine, and reads back identical.
    odd = {"role": "user", "content": "file-\udcff.txt", "\ud800": "key"}
    store.add_messages("s", [odd, user("2")])
    assert store.get_messages("s") == [odd, user("2")]
    assert store.rewind("s", 2) == [odd, user("2")]


@pytest.mark.parametrize(
    ("args", "error", "name"),
    [
        (("", "run", 1.0), ValueError, "session_id"),
        ((None, "run", 1.0), TypeError, "session_id"),
        (("s", None, 1.0), TypeError, "owner"),
        (("s", 42, 1.0), TypeError, "owner"),
        (("s", "\ud800", 1.0), ValueError, "owner"),
        (("s", "", 1.0), ValueError, "owner"),
        (("s", "run", "1"), TypeError, "lease"),
        (("s", "run", True), TypeError, "lease"),
        (("s", "run", None), TypeError, "lease"),
        (("s", "run", 0), ValueError, "lease"),
        (("s", "run", -1.0), ValueError, "lease"),
        (("s", "run", float("inf")), ValueError, "lease"),
        (("s", "run", float("nan")), ValueError, "lease"),
    ],
)
def test_lease_arguments_are_checked_on_every_engine(
    store: Any, args: tuple[Any, Any, Any], error: type, name: str
) -> None:
    with pytest.raises(error, match=name):
        store.try_lock(*args)
    if name != "lease":
        with pytest.raises(error, match=name):
            store.unlock(*args[:2])
    assert store.try_lock("s", "run", 60.0)  # nothing was taken by the refused calls
    store.unlock("s", "run")


def test_add_messages_takes_any_iterable(store: Any) -> None:
    store.add_messages("s", (user("1"), user("2")))
    store.add_messages("s", (user(str(n)) for n in range(3, 5)))
    store.add_messages("s", iter([]))
    assert store.get_messages("s") == [user(str(n)) for n in range(1, 5)]
    for bad in ("text", b"bytes", {"role": "user"}, 42):
        with pytest.raises(TypeError, match="messages"):
            store.add_messages("s", bad)
    assert store.message_count("s") == 4


def test_a_plain_window_is_exactly_the_newest_items(store: Any) -> None:
    history = [
        user("q"),
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "x"},
    ]
    store.add_messages("s", history)
    assert store.get_messages("s", 2, tool_safe=False) == history[1:]
    assert store.get_messages("s", 1, tool_safe=False) == history[2:]
    assert store.get_messages("s", 1) == []  # tool-safe: an output without its call is cut
    assert store.get_messages("s", 9, tool_safe=False) == history
    with pytest.raises(TypeError, match="tool_safe"):
        store.get_messages("s", 2, tool_safe="no")


def _exchange_session(store: Any, session_id: str) -> None:
    """A session whose tail is a tool exchange, so windows differ from plain tails."""
    store.add_messages(
        session_id,
        [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "x"},
            {"role": "user", "content": "three"},
        ],
    )


@pytest.mark.parametrize(
    ("limit", "tool_safe"), [(None, True), (0, True), (1, True), (2, True), (2, False), (9, True)]
)
def test_lock_and_read_takes_the_lease_and_reads_as_get_messages(
    store: Any, limit: int | None, tool_safe: bool
) -> None:
    _exchange_session(store, "s")
    read = store.lock_and_read("s", "run-1", 60, limit, tool_safe=tool_safe)
    assert read == store.get_messages("s", limit, tool_safe=tool_safe)
    assert not store.try_lock("s", "run-2", 60)  # run-1 holds it now
    # Another owner gets None and reads nothing; the holder renews and reads again.
    assert store.lock_and_read("s", "run-2", 60, limit, tool_safe=tool_safe) is None
    assert store.lock_and_read("s", "run-1", 60, limit, tool_safe=tool_safe) == read
    store.unlock("s", "run-1")
    assert store.lock_and_read("unknown", "run-2", 60, limit) == []
    assert store.try_lock("s", "run-2", 60)


def test_write_and_unlock_appends_then_gives_the_lease_back(store: Any) -> None:
    _exchange_session(store, "s")
    assert store.lock_and_read("s", "run-1", 60) is not None
    store.write_and_unlock(
        "s", "run-1", ({"role": "assistant", "content": f"r{i}"} for i in (1, 2))
    )
    assert [m.get("content") for m in store.get_messages("s")][-3:] == ["three", "r1", "r2"]
    assert store.try_lock("s", "run-2", 60)  # given back
    # Nothing to write: the lease is still given back, and nothing is added.
    store.write_and_unlock("s", "run-2", [])
    assert store.message_count("s") == 7
    assert store.try_lock("s", "run-3", 60)
    # Another owner's lease is left alone.
    store.write_and_unlock("s", "run-2", [{"role": "user", "content": "late"}])
    assert not store.try_lock("s", "run-4", 60)


def test_write_and_unlock_with_bad_messages_stores_nothing_and_gives_the_lease_back(
    store: Any,
) -> None:
    assert store.try_lock("s", "run-1", 60)
    with pytest.raises(TypeError, match="message 1 is not JSON-serializable"):
        store.write_and_unlock("s", "run-1", [{"role": "user", "content": "ok"}, {"x": {1, 2}}])
    assert store.message_count("s") == 0
    assert store.try_lock("s", "run-2", 60)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.lock_and_read("", "run", 60), ValueError),
        (lambda s: s.lock_and_read("s", 7, 60), TypeError),
        (lambda s: s.lock_and_read("s", "run", 0), ValueError),
        (lambda s: s.lock_and_read("s", "run", 60, -1), ValueError),
        (lambda s: s.lock_and_read("s", "run", 60, 2, tool_safe="yes"), TypeError),
        (lambda s: s.write_and_unlock("", "run", []), ValueError),
        (lambda s: s.write_and_unlock("s", None, []), TypeError),
    ],
)
def test_the_run_calls_check_their_arguments_and_take_nothing(
    store: Any, call: Any, error: type
) -> None:
    with pytest.raises(error):
        call(store)
    assert store.try_lock("s", "other", 60)
    assert store.message_count("s") == 0
