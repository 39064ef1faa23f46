"""Hostile input: JSON-ready messages round-trip exactly, anything else is refused by name
and stores nothing, and no session id can reach the SQL."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import itertools
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentsession import SQLiteSessionMemory, SQLiteStore

from . import _workers
from ._workers import schema_of

pytestmark = pytest.mark.timeout(900 if _workers.FULL_SIZE else 120)

EXAMPLES = _workers.sized(50, 500)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # write nothing into the working tree
    derandomize=not _workers.FULL_SIZE,  # CI sees the same examples every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=6),
    max_leaves=40,
)
json_messages = st.dictionaries(st.text(), json_values, max_size=8)


class Opaque:
    """An arbitrary object, as a careless tool might return."""

    def __repr__(self) -> str:
        return "<Opaque tool result>"


bad_values = st.sampled_from(
    [
        b"raw bytes",
        bytearray(b"buffer"),
        {1, 2, 3},
        frozenset({"a"}),
        ("a", "tuple"),
        Opaque(),
        object(),
        math.nan,
        math.inf,
        -math.inf,
        1 + 2j,
        decimal.Decimal("1.5"),
        datetime.date(2024, 1, 1),
    ]
)
# A key JSON would turn into a string (None: see test_a_none_key_is_refused).
bad_keys = st.sampled_from([1, 2.5, True, ("a", 1), b"key"])


@st.composite
def messages_with_a_bad_value(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """A JSON-ready message with one bad value (or key) somewhere inside; and that value."""
    message = draw(json_messages)
    if draw(st.booleans()):
        bad = draw(bad_keys)
        nested: Any = {bad: draw(json_scalars)}
    else:
        bad = draw(bad_values)
        nested = bad
    for wrap in draw(st.lists(st.sampled_from(["list", "dict"]), max_size=4)):
        if wrap == "list":
            nested = [*draw(st.lists(json_scalars, max_size=2)), nested]
        else:
            nested = {**draw(st.dictionaries(st.text(), json_scalars, max_size=2)), "x": nested}
    message[draw(st.text())] = nested
    return message, bad


hostile_ids = st.one_of(
    st.text(min_size=1),
    st.sampled_from(
        [
            "'",
            '"',
            "`",
            "'; DROP TABLE agentsession_messages; --",
            '" OR 1=1 --',
            "') OR ('1'='1",
            "%",
            "_",
            "*",
            "\\",
            "a\x00b",
            "\x00",
            "a\x00",
            " ",
            "\n",
            "agentsession_sessions",
            "NULL",
            "x" * 100_000,
        ]
    ),
)


# -- helpers ----------------------------------------------------------------------------------


def identical(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not True, 0.0 is not -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def nested(depth: int, kind: str = "list") -> dict[str, Any]:
    """A message whose content is ``depth`` lists (or objects) deep."""
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return {"role": "user", "content": value}


def at_stack_depth(frames: int, call: Callable[[], Any]) -> Any:
    """Run ``call`` with ``frames`` more Python frames on the stack (a framework's depth)."""
    if frames == 0:
        return call()
    return at_stack_depth(frames - 1, call)


_ids = itertools.count()
#: Examples each property-based test ran, for the figures.
examples: Counter[str] = Counter()


def fresh_id() -> str:
    return f"session-{next(_ids)}"


class Backends:
    """A ``":memory:"`` store, a file store, and a file memory driven through a portal."""

    def __init__(self, folder: Path, portal: Any) -> None:
        self.memory_store = SQLiteStore()
        self.file_store = SQLiteStore(folder / "hostile.db")
        self.memory = SQLiteSessionMemory(folder / "hostile-async.db")
        self.portal = portal
        self.path = folder / "hostile.db"

    def stores(self) -> list[SQLiteStore]:
        return [self.memory_store, self.file_store, self.memory.store]

    def async_add(self, session_id: Any, messages: Any) -> None:
        self.portal.call(self.memory.add_messages, session_id, messages)

    def async_get(self, session_id: Any) -> list[dict[str, Any]]:
        return self.portal.call(self.memory.get_messages, session_id)  # type: ignore[no-any-return]

    def close(self) -> None:
        for store in self.stores():
            store.close()


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        backends = Backends(tmp_path_factory.mktemp("hostile"), portal)
        yield backends
        backends.close()
    if examples:
        ran = ", ".join(f"{name} {count}" for name, count in sorted(examples.items()))
        _workers.figure(f"hostile input: hypothesis examples run: {ran}")


# -- JSON-ready input round-trips exactly ----------------------------------------------------


@SETTINGS
@given(messages=st.lists(json_messages, min_size=1, max_size=5))
def test_json_ready_messages_round_trip_exactly(
    backends: Backends, messages: list[dict[str, Any]]
) -> None:
    """Any JSON-ready messages (unicode text, big and negative ints, floats, nesting).

    Proves: through a ``":memory:"`` store, a file store, the async memory and the Agents
    SDK ``Session``, what is read back is identical to what was added: same values, same
    types (``True`` stays ``True``, ``1.0`` stays a float, ``-0.0`` keeps its sign), same
    key order.
    """
    examples["round-trip"] += 1
    for store in (backends.memory_store, backends.file_store):
        session = fresh_id()
        store.add_messages(session, messages)
        assert identical(store.get_messages(session), messages)
    session = fresh_id()
    backends.async_add(session, messages)
    assert identical(backends.async_get(session), messages)
    bound = backends.memory.session(fresh_id())
    backends.portal.call(bound.add_items, messages)
    assert identical(backends.portal.call(bound.get_items), messages)


def test_large_messages_round_trip(backends: Backends) -> None:
    """Big content: a 1.5 MB (full size 24 MB) string, 2,000 (20,000) messages in one add,
    a list of 100,000 numbers. Proves each reads back identical, from store and memory."""
    big = {"role": "user", "content": "é🙂" * _workers.sized(250_000, 4_000_000)}
    many = [{"role": "user", "content": f"m{i}"} for i in range(_workers.sized(2_000, 20_000))]
    numbers = {"role": "tool", "output": list(range(100_000))}
    for batch in ([big], many, [numbers]):
        for store in (backends.memory_store, backends.file_store):
            session = fresh_id()
            store.add_messages(session, batch)
            assert store.get_messages(session) == batch
        session = fresh_id()
        backends.async_add(session, batch)
        assert backends.async_get(session) == batch


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deeply_nested_messages_round_trip(backends: Backends, kind: str) -> None:
    """A message nested 200 deep, added from the async memory (a worker thread) and read
    back from a call stack 300 frames deep (a web framework's). Proves it is identical."""
    message = nested(200, kind)
    session = fresh_id()
    backends.async_add(session, [message])
    store = backends.memory.store
    assert at_stack_depth(300, lambda: store.get_messages(session)) == [message]
    store.add_messages(session, [message])
    assert backends.async_get(session) == [message, message]


def test_an_accepted_message_reads_back_from_any_caller(backends: Backends) -> None:
    """Whatever ``add_messages`` accepts, ``get_messages`` returns, whoever calls it.

    A message nested 900 deep is added from a fresh thread (a shallow stack, as anyio's
    worker threads have), then read from a caller 200 frames deep. The store may refuse
    the message (``TypeError``) but, if it accepted it, reading it must not fail: a
    ``RecursionError`` there makes the whole session unreadable.
    """
    session = fresh_id()
    outcome: list[BaseException | None] = []

    def add() -> None:
        try:
            backends.file_store.add_messages(session, [nested(900)])
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=add)
    thread.start()
    thread.join()
    if outcome[0] is not None:
        assert isinstance(outcome[0], TypeError), repr(outcome[0])
        assert backends.file_store.get_messages(session) == []
        return
    assert at_stack_depth(200, lambda: backends.file_store.get_messages(session)) == [nested(900)]


def test_lone_surrogates_round_trip(backends: Backends) -> None:
    """Strings with lone surrogates (what ``os.fsdecode`` makes of undecodable file names)
    are JSON-ready: ``json`` writes and reads them as ``\\udxxx`` escapes.

    Proves: such a value, and such a key, read back identical from the store and the
    memory (or, at the least, are refused with a TypeError naming the message).
    """
    messages = [
        {"role": "tool", "output": "file-\udcff.txt"},
        {"role": "user", "content": "\ud800 alone", "\udfff": "key"},
    ]
    for store in (backends.memory_store, backends.file_store):
        session = fresh_id()
        store.add_messages(session, messages)
        assert store.get_messages(session) == messages
    session = fresh_id()
    backends.async_add(session, messages)
    assert backends.async_get(session) == messages


# -- everything else is refused by name, and nothing is stored ------------------------------


@SETTINGS
@given(case=messages_with_a_bad_value(), good=st.lists(json_messages, max_size=3))
def test_non_json_values_are_refused_by_name_and_store_nothing(
    backends: Backends, case: tuple[dict[str, Any], Any], good: list[dict[str, Any]]
) -> None:
    """A message holding bytes, a set, a tuple, an object, NaN, an infinity, a complex,
    Decimal or date value, or a non-string key, anywhere inside, among valid messages.

    Proves: store and memory raise ``TypeError`` (or ``ValueError``) whose message shows
    the offending value; none of the add is stored: the session's earlier history and the
    list of sessions are unchanged.
    """
    examples["non-JSON"] += 1
    message, bad = case
    batch = [*good, message]
    shown = repr(bad)[:30]
    for store in (backends.memory_store, backends.file_store):
        session = fresh_id()
        store.add_messages(session, [{"role": "user", "content": "earlier"}])
        sessions = len(store.list_sessions())
        with pytest.raises((TypeError, ValueError)) as info:
            store.add_messages(session, batch)
        assert shown in str(info.value)
        assert store.get_messages(session) == [{"role": "user", "content": "earlier"}]
        assert len(store.list_sessions()) == sessions
        with pytest.raises((TypeError, ValueError)):
            store.add_messages(fresh_id(), batch)
        assert len(store.list_sessions()) == sessions
    session = fresh_id()
    with pytest.raises((TypeError, ValueError)) as info:
        backends.async_add(session, batch)
    assert shown in str(info.value)
    assert backends.async_get(session) == []


def test_a_none_key_is_refused(backends: Backends) -> None:
    """``{None: ...}`` is not JSON: ``json`` would silently store the key as ``"null"``.

    Proves: it is refused with a TypeError naming it, and nothing is stored.
    """
    session = fresh_id()
    with pytest.raises(TypeError, match="None"):
        backends.file_store.add_messages(session, [{"role": "user", None: "value"}])
    assert backends.file_store.get_messages(session) == []


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(nested(100_000), id="nested-100000-deep"),
        pytest.param({"role": "user", "content": 10**5000}, id="int-of-5000-digits"),
    ],
)
def test_unrepresentable_values_are_refused_naming_the_message(
    backends: Backends, message: dict[str, Any]
) -> None:
    """Values Python itself cannot write as JSON text (nesting past the recursion limit,
    integers past the int-to-text digit limit).

    Proves: a ``TypeError`` or ``ValueError`` that names the message (its index), never a
    bare ``RecursionError`` or an error about something else; nothing is stored.
    """
    session = fresh_id()
    with pytest.raises((TypeError, ValueError)) as info:
        backends.file_store.add_messages(session, [{"role": "user", "content": "ok"}, message])
    assert "message 1" in str(info.value)
    assert backends.file_store.get_messages(session) == []


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        pytest.param([None], "message 0 must be a JSON object (dict), not NoneType", id="None"),
        pytest.param(["text"], "not str: 'text'", id="str"),
        pytest.param([["role", "user"]], "not list: ['role', 'user']", id="list"),
        pytest.param([("role", "user")], "not tuple: ('role', 'user')", id="tuple"),
        pytest.param([{"ok": 1}, 1], "message 1 must be a JSON object (dict), not int", id="int"),
        pytest.param({"role": "user"}, "not dict: {'role': 'user'}", id="a-dict-not-a-list"),
        pytest.param("hello", "not str: 'hello'", id="a-str-not-a-list"),
        pytest.param(None, "not NoneType: None", id="None-not-a-list"),
    ],
)
def test_what_is_not_a_list_of_objects_is_refused(
    backends: Backends, messages: Any, named: str
) -> None:
    """Proves: a message that is not a JSON object, or messages not given as a list, are
    refused with TypeError naming what was given, by store and memory; nothing stored."""
    session = fresh_id()
    with pytest.raises(TypeError) as info:
        backends.file_store.add_messages(session, messages)
    assert named in str(info.value)
    with pytest.raises(TypeError):
        backends.async_add(session, messages)
    assert backends.file_store.get_messages(session) == []
    assert backends.async_get(session) == []


# -- session ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session_id", "error"),
    [
        ("", ValueError),
        (None, TypeError),
        (1, TypeError),
        (b"bytes", TypeError),
        (["a"], TypeError),
        (Opaque(), TypeError),
    ],
)
def test_session_ids_that_are_empty_or_not_strings_are_refused(
    backends: Backends, session_id: Any, error: type[Exception]
) -> None:
    """Proves: every method of store and memory refuses them with the right builtin
    error, whose message names ``session_id``; nothing is stored."""
    calls: list[Callable[[], object]] = []
    for store in backends.stores():
        calls += [
            lambda store=store: store.add_messages(session_id, [{"role": "user"}]),
            lambda store=store: store.get_messages(session_id),
            lambda store=store: store.pop_message(session_id),
            lambda store=store: store.clear_session(session_id),
        ]
    calls += [
        lambda: backends.async_add(session_id, [{"role": "user"}]),
        lambda: backends.async_get(session_id),
        lambda: asyncio.run(backends.memory.session(session_id).get_items()),
    ]
    before = [len(store.list_sessions()) for store in backends.stores()]
    for call in calls:
        with pytest.raises(error, match="session_id"):
            call()
    assert [len(store.list_sessions()) for store in backends.stores()] == before


def test_a_session_id_with_a_lone_surrogate_is_refused_by_name(backends: Backends) -> None:
    """A session id SQLite cannot store as text (a lone surrogate).

    Proves: it is refused like any other bad id, with a ValueError naming ``session_id``
    (not an encoding error from deep inside the driver); nothing is stored.
    """
    before = len(backends.file_store.list_sessions())
    with pytest.raises(ValueError, match="session_id"):
        backends.file_store.add_messages("user-\udcff", [{"role": "user"}])
    assert len(backends.file_store.list_sessions()) == before


@SETTINGS
@given(ids=st.lists(hostile_ids, min_size=1, max_size=6, unique=True))
def test_hostile_session_ids_are_stored_safely(backends: Backends, ids: list[str]) -> None:
    """Session ids of any text: quotes, SQL, LIKE wildcards, NUL bytes, 100,000 characters.

    Proves: each id keeps its own history (no two ids share one, an id is not a pattern),
    ``list_sessions`` returns the ids exactly, pop and clear touch only their session, and
    the schema is unchanged afterwards.
    """
    examples["session-ids"] += 1
    store = SQLiteStore(":memory:")
    for number, session_id in enumerate(ids):
        store.add_messages(session_id, [{"role": "user", "content": str(number)}])
    for number, session_id in enumerate(ids):
        assert store.get_messages(session_id) == [{"role": "user", "content": str(number)}]
    assert sorted(s.session_id for s in store.list_sessions()) == sorted(ids)
    assert store.pop_message(ids[0]) == {"role": "user", "content": "0"}
    store.clear_session(ids[-1])
    for number, session_id in enumerate(ids[1:-1], 1):
        assert store.get_messages(session_id) == [{"role": "user", "content": str(number)}]
    store.close()

    schema = schema_of(backends.path)
    for session_id in ids:
        backends.file_store.add_messages(session_id, [{"role": "user", "content": session_id}])
        assert backends.file_store.get_messages(session_id)[-1]["content"] == session_id
    assert schema_of(backends.path) == schema


@pytest.mark.parametrize(
    ("limit", "error"),
    [(-1, ValueError), (True, TypeError), (1.5, TypeError), ("3", TypeError)],
)
def test_bad_limits_are_refused(backends: Backends, limit: Any, error: type[Exception]) -> None:
    """Proves: ``get_messages`` refuses a negative, boolean, float or text limit by name."""
    for store in backends.stores():
        with pytest.raises(error, match="limit"):
            store.get_messages("s", limit=limit)
