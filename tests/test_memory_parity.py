"""The async memory offers every public method of its store, with the same parameters.

``StoreMemory`` is checked against the ``Store`` protocol, and each engine's memory
against its store class, so a method added to a store without its async twin (or a twin
whose parameters drift from the store's) fails here.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import pytest

from agentsession import (
    PostgresSessionMemory,
    RedisSessionMemory,
    SQLiteSessionMemory,
    SQLiteStore,
    StoreMemory,
)
from agentsession.protocol import Store
from agentsession.stores.postgres import PostgresStore
from agentsession.stores.redis import RedisStore

#: (store class, the memory class that must offer every one of its methods).
PAIRS = [
    pytest.param(Store, StoreMemory, id="Store"),
    pytest.param(SQLiteStore, SQLiteSessionMemory, id="SQLiteStore"),
    pytest.param(PostgresStore, PostgresSessionMemory, id="PostgresStore"),
    pytest.param(RedisStore, RedisSessionMemory, id="RedisStore"),
]

#: Written with the run lease, not as plain twins: checked to exist, not forwarded.
LEASE_METHODS = {"try_lock", "unlock", "lock_and_read", "write_and_unlock"}

#: Memory methods that are not a store method's twin.
MEMORY_ONLY = {"aclose", "session", "compact"}


def public_methods(cls: type) -> set[str]:
    """The public methods of ``cls`` (properties and data attributes excluded)."""
    return {
        name
        for name in dir(cls)
        if not name.startswith("_")
        and isinstance(
            inspect.getattr_static(cls, name), (staticmethod, classmethod, type(public_methods))
        )
    }


def parameters(func: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def parity_problems(store_cls: type, memory_cls: type) -> list[str]:
    """What keeps ``memory_cls`` from offering exactly ``store_cls``'s methods, async."""
    problems = []
    for name in sorted(public_methods(store_cls)):
        twin_name = "aclose" if name == "close" else name
        twin = getattr(memory_cls, twin_name, None)
        if twin is None:
            problems.append(f"{memory_cls.__name__} has no {twin_name}()")
            continue
        if not inspect.iscoroutinefunction(twin):
            problems.append(f"{memory_cls.__name__}.{twin_name} is not async")
        if parameters(twin) != parameters(getattr(store_cls, name)):
            problems.append(
                f"{memory_cls.__name__}.{twin_name}{inspect.signature(twin)} differs from "
                f"{store_cls.__name__}.{name}{inspect.signature(getattr(store_cls, name))}"
            )
    for name in sorted(public_methods(memory_cls) - public_methods(store_cls) - MEMORY_ONLY):
        if inspect.iscoroutinefunction(getattr(memory_cls, name)):
            problems.append(f"{memory_cls.__name__}.{name} is the twin of no store method")
    return problems


@pytest.mark.parametrize(("store_cls", "memory_cls"), PAIRS)
def test_every_store_method_has_an_async_twin_with_the_same_parameters(
    store_cls: type, memory_cls: type
) -> None:
    assert parity_problems(store_cls, memory_cls) == []
    # close() stays blocking on the memory too (it is also a context manager's exit).
    assert parameters(memory_cls.close) == parameters(store_cls.close)


def test_a_store_method_added_without_its_twin_is_caught() -> None:
    class GrownStore(SQLiteStore):
        def archive(self, session_id: str, *, reason: str = "") -> None: ...

        def rewind(self, session_id: str, turns: int = 1, *, dry_run: bool = False) -> Any: ...

    assert parity_problems(GrownStore, SQLiteSessionMemory) == [
        "SQLiteSessionMemory has no archive()",
        "SQLiteSessionMemory.rewind(self, session_id: 'str', turns: 'int' = 1) -> "
        "'list[dict[str, Any]]' differs from GrownStore.rewind(self, session_id: 'str', "
        "turns: 'int' = 1, *, dry_run: 'bool' = False) -> 'Any'",
    ]


def test_the_lease_twins_exist() -> None:
    for name in LEASE_METHODS:
        assert inspect.iscoroutinefunction(getattr(StoreMemory, name)), name
        assert parameters(getattr(StoreMemory, name)) == parameters(getattr(SQLiteStore, name))
    assert "lease_expires" in dir(StoreMemory)


class RecordingStore:
    """Any method call is recorded with its arguments and thread, and returns RESULT."""

    RESULT = object()

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any], int]] = []

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs, threading.get_ident()))
            return self.RESULT

        return method


def _forwarded_methods() -> list[Any]:
    cases = []
    for pair in PAIRS:
        store_cls, memory_cls = pair.values
        for name in sorted(public_methods(store_cls) - LEASE_METHODS - {"close"}):
            cases.append(pytest.param(store_cls, memory_cls, name, id=f"{pair.id}.{name}"))
    return cases


@pytest.mark.anyio
@pytest.mark.parametrize(("store_cls", "memory_cls", "name"), _forwarded_methods())
async def test_each_twin_runs_its_store_method_in_a_worker_thread_with_every_argument(
    store_cls: type, memory_cls: type, name: str
) -> None:
    store = RecordingStore()
    memory = memory_cls.__new__(memory_cls)
    StoreMemory.__init__(memory, store)  # type: ignore[arg-type]
    # A distinct value for every parameter, passed the way the signature names it.
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for parameter in list(inspect.signature(getattr(store_cls, name)).parameters.values())[1:]:
        value = object()
        expected[parameter.name] = value
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[parameter.name] = value
        else:
            args.append(value)

    result = await getattr(memory, name)(*args, **kwargs)

    returns = inspect.signature(getattr(store_cls, name)).return_annotation
    assert result is (None if returns in (None, "None") else RecordingStore.RESULT)
    [(called, call_args, call_kwargs, thread)] = store.calls
    assert called == name
    bound = inspect.signature(getattr(store_cls, name)).bind(None, *call_args, **call_kwargs)
    bound.apply_defaults()
    assert {key: v for key, v in bound.arguments.items() if key != "self"} == expected
    assert thread != threading.get_ident()  # never on the event loop's thread
