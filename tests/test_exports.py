"""The public names: what the spec and the docs tell users to import."""

from __future__ import annotations

import importlib

import agents
import pytest

import agentsession

PUBLIC_MODULES = [
    "agentsession",
    "agentsession.exceptions",
    "agentsession.memory",
    "agentsession.protocol",
    "agentsession.runner",
    "agentsession.session",
    "agentsession.stores",
    "agentsession.stores.sqlite",
    "agentsession.window",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_module_lists_real_names_in_all(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    assert list(module.__all__) == sorted(module.__all__)
    for attribute in module.__all__:
        assert hasattr(module, attribute), f"{name}.{attribute} is listed but missing"


def test_the_spec_imports_work() -> None:
    from agentsession import Agent, RunConfig, Runner, SessionMemory, SQLiteSessionMemory
    from agentsession.memory import SessionMemory as FromMemoryModule

    assert FromMemoryModule is SessionMemory
    assert Agent is agents.Agent
    assert issubclass(RunConfig, agents.RunConfig)
    assert {"memory", "session_id"} <= set(RunConfig.__dataclass_fields__)
    assert callable(Runner.run) and callable(Runner.run_sync) and callable(Runner.run_streamed)
    assert isinstance(SQLiteSessionMemory(), SessionMemory)


def test_bound_session_satisfies_the_sdk_session_protocol() -> None:
    memory = agentsession.SQLiteSessionMemory()
    session = memory.session("user_1")
    assert isinstance(session, agents.memory.Session)
    assert session.session_id == "user_1" and session.session_settings.limit is None
    memory.close()


def test_run_config_validates_memory_and_session_id() -> None:
    with pytest.raises(TypeError, match="object lacks get_messages, add_messages, clear_session"):
        agentsession.RunConfig(memory=object(), session_id="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="session_id must be a str"):
        agentsession.RunConfig(session_id=123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        agentsession.RunConfig(session_id="")
