"""The Agents SDK's private or undocumented names agentsession relies on still fit.

Each name comes through ``agentsession._sdk``, the one module that touches them; a new
SDK release that moves or reshapes one fails here with a message naming it.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import agents
from agents import Agent
from agents.testing import ScriptedModel, assistant_message
from openai import AsyncOpenAI

from agentsession import _sdk


def moved(name: str, what: str) -> str:
    return (
        f"openai-agents {_sdk.sdk_version()}: {name} {what}; agentsession/_sdk.py is the "
        "one place to adapt (see its docstring for who uses it)"
    )


def test_the_default_client_and_key_getters_see_what_the_app_installed() -> None:
    # _provider.py asks these whether agents.set_default_openai_client/_key was called.
    before_client = _sdk.get_default_openai_client()
    before_key = _sdk.get_default_openai_key()
    client = AsyncOpenAI(api_key="sk-surface-test")
    try:
        agents.set_default_openai_client(client, use_for_tracing=False)
        assert _sdk.get_default_openai_client() is client, moved(
            "agents.models._openai_shared.get_default_openai_client",
            "no longer returns the client agents.set_default_openai_client installed",
        )
        agents.set_default_openai_key("sk-surface-key", use_for_tracing=False)
        assert _sdk.get_default_openai_key() == "sk-surface-key", moved(
            "agents.models._openai_shared.get_default_openai_key",
            "no longer returns the key agents.set_default_openai_key installed",
        )
    finally:
        agents.set_default_openai_client(before_client, use_for_tracing=False)  # type: ignore[arg-type]
        agents.set_default_openai_key(before_key, use_for_tracing=False)  # type: ignore[arg-type]
        asyncio.run(client.close())


def test_the_session_settings_helpers_take_what_session_py_passes() -> None:
    settings = _sdk.SessionSettings(limit=3)
    coerce = "agents.memory.session_settings.coerce_session_settings"
    assert _sdk.coerce_session_settings(settings) is settings, moved(
        coerce, "no longer returns a SessionSettings it is given unchanged"
    )
    from_dict = _sdk.coerce_session_settings({"limit": 5})
    assert isinstance(from_dict, _sdk.SessionSettings) and from_dict.limit == 5, moved(
        coerce, "no longer turns {'limit': 5} into SessionSettings(limit=5)"
    )
    resolve = "agents.memory.session_settings.resolve_session_limit"
    cases = [((None, settings), 3), ((7, settings), 7), ((None, None), None)]
    for args, expected in cases:
        got = _sdk.resolve_session_limit(*args)
        assert got == expected, moved(resolve, f"returns {got!r} for {args!r}, not {expected!r}")


def test_the_offline_models_type_aliases_exist() -> None:
    for name in ("TResponseOutputItem", "TResponseStreamEvent"):
        assert getattr(_sdk, name, None) is not None, moved(f"agents.items.{name}", "is gone")


def test_a_streamed_result_has_a_run_task_and_a_replaceable_stream_events() -> None:
    # _streamed.py replaces result.stream_events on the instance and watches
    # result.run_loop_task; the chat waits for run_task(result).
    assert inspect.isasyncgenfunction(_sdk.RunResultStreaming.stream_events), moved(
        "RunResultStreaming.stream_events", "is no longer an async generator method"
    )

    async def run() -> tuple[Any, list[str]]:
        agent = Agent(name="A", model=ScriptedModel([[assistant_message("hi")]]))
        result = agents.Runner.run_streamed(agent, "hello")
        task = _sdk.run_task(result)
        assert isinstance(task, asyncio.Task), moved(
            "RunResultStreaming.run_loop_task", f"is {task!r}, not the task running the run"
        )
        events = result.stream_events
        seen: list[str] = []

        async def replaced() -> Any:
            seen.append("replaced")
            async for event in events():
                yield event

        try:
            result.stream_events = replaced  # type: ignore[method-assign]
        except AttributeError as exc:
            raise AssertionError(
                moved("RunResultStreaming.stream_events", f"cannot be replaced ({exc})")
            ) from exc
        async for _ in result.stream_events():
            pass
        assert task.done() and not task.cancelled() and task.exception() is None, moved(
            "RunResultStreaming.run_loop_task", "is not done once stream_events() has ended"
        )
        return result.final_output, seen

    final_output, seen = asyncio.run(run())
    assert seen == ["replaced"], moved(
        "RunResultStreaming.stream_events", "replaced on the instance is not what runs"
    )
    assert final_output == "hi"
