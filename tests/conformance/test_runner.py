"""The Runner with session memory, for every memory: what the model sees, what is stored."""

from __future__ import annotations

import json
from typing import Any

import agents
import pytest
from agents import InputGuardrail, InputGuardrailTripwireTriggered, SQLiteSession, handoff
from agents.guardrail import GuardrailFunctionOutput
from agents.testing import ScriptedModel, assistant_message, function_call

from agentsession import Agent, RunConfig, Runner, function_tool
from tests.conftest import RUNNER_METHODS, run_with

pytestmark = pytest.mark.anyio


def texts(items: list[dict[str, Any]]) -> list[str]:
    """The readable text of each message item (user or assistant)."""
    out = []
    for item in items:
        content = item.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.append("".join(part.get("text", "") for part in content))
    return out


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_second_turn_sees_the_first(memory: Any, method: str) -> None:
    model = ScriptedModel([[assistant_message("San Francisco")], [assistant_message("CA")]])
    agent = Agent(name="Assistant", model=model)
    config = RunConfig(memory=memory, session_id="conversation_123")

    assert await run_with(method, agent, "Which city is the bridge in?", config) == "San Francisco"
    assert await run_with(method, agent, "What state is it in?", config) == "CA"

    assert texts(model.last_call.input) == [
        "Which city is the bridge in?",
        "San Francisco",
        "What state is it in?",
    ]
    stored = await memory.get_messages("conversation_123")
    assert texts(stored) == [
        "Which city is the bridge in?",
        "San Francisco",
        "What state is it in?",
        "CA",
    ]


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_memory_without_session_id_raises_before_the_model_is_called(
    memory: Any, method: str
) -> None:
    model = ScriptedModel([[assistant_message("never")]])
    agent = Agent(name="Assistant", model=model)
    with pytest.raises(ValueError, match="^session_id is required when memory is enabled$"):
        await run_with(method, agent, "Hello", RunConfig(memory=memory))
    assert model.calls == ()
    assert model.remaining_steps == 1


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_without_memory_runs_forget_like_the_sdk(method: str) -> None:
    model = ScriptedModel([[assistant_message("one")], [assistant_message("two")]])
    agent = Agent(name="Assistant", model=model)
    await run_with(method, agent, "first", RunConfig())
    await run_with(method, agent, "second", RunConfig())
    assert texts(model.last_call.input) == ["second"]


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_tool_calls_and_outputs_are_stored_in_order(memory: Any, method: str) -> None:
    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    model = ScriptedModel(
        [
            [function_call("get_weather", {"city": "Paris"}, call_id="call_1")],
            [assistant_message("It is sunny in Paris.")],
            [assistant_message("You asked about Paris.")],
        ]
    )
    agent = Agent(name="Assistant", model=model, tools=[get_weather])
    config = RunConfig(memory=memory, session_id="tools")

    assert await run_with(method, agent, "Weather in Paris?", config) == "It is sunny in Paris."
    await run_with(method, agent, "What did I ask?", config)

    stored = await memory.get_messages("tools")
    kinds = [item.get("type", "message") for item in stored]
    assert kinds == [
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "message",
    ]
    assert stored[1]["call_id"] == stored[2]["call_id"] == "call_1"
    assert json.loads(stored[1]["arguments"]) == {"city": "Paris"}
    assert stored[2]["output"] == "sunny in Paris"
    # The model's last call carried the whole exchange, pairs intact.
    sent = [item.get("type", "message") for item in model.last_call.input]
    assert sent == kinds[:5]


async def test_handoffs_are_stored_and_seen_by_the_next_run(memory: Any) -> None:
    model = ScriptedModel(
        [
            [function_call("transfer_to_billing", {}, call_id="handoff_1")],
            [assistant_message("Billing here: your invoice is paid.")],
            [assistant_message("Still billing.")],
        ]
    )
    billing = Agent(name="Billing", model=model)
    support = Agent(name="Support", model=model, handoffs=[handoff(billing)])
    config = RunConfig(memory=memory, session_id="handoff")

    result = await Runner.run(support, "Is my invoice paid?", run_config=config)
    assert result.last_agent is billing
    stored = await memory.get_messages("handoff")
    assert [item.get("type", "message") for item in stored] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert stored[1]["name"] == "transfer_to_billing"

    await Runner.run(billing, "Thanks", run_config=config)
    assert texts(model.last_call.input)[-2:] == ["Billing here: your invoice is paid.", "Thanks"]


async def test_two_agents_share_one_session(memory: Any) -> None:
    model = ScriptedModel([[assistant_message("support reply")], [assistant_message("billing")]])
    support = Agent(name="Support", model=model)
    billing = Agent(name="Billing", model=model)
    config = RunConfig(memory=memory, session_id="user_123")
    await Runner.run(support, "I need help", run_config=config)
    await Runner.run(billing, "And my bill?", run_config=config)
    assert texts(model.last_call.input) == ["I need help", "support reply", "And my bill?"]


async def test_sessions_are_isolated_through_the_runner(memory: Any) -> None:
    model = ScriptedModel([[assistant_message("hi 1")], [assistant_message("hi 2")]])
    agent = Agent(name="Assistant", model=model)
    await Runner.run(agent, "I am user 1", run_config=RunConfig(memory=memory, session_id="u1"))
    await Runner.run(agent, "I am user 2", run_config=RunConfig(memory=memory, session_id="u2"))
    assert texts(model.last_call.input) == ["I am user 2"]
    assert texts(await memory.get_messages("u1")) == ["I am user 1", "hi 1"]


async def test_clear_session_starts_the_conversation_afresh(memory: Any) -> None:
    model = ScriptedModel([[assistant_message("a")], [assistant_message("b")]])
    agent = Agent(name="Assistant", model=model)
    config = RunConfig(memory=memory, session_id="s")
    await Runner.run(agent, "remember me", run_config=config)
    await memory.clear_session("s")
    await Runner.run(agent, "who am I?", run_config=config)
    assert texts(model.last_call.input) == ["who am I?"]


async def test_guardrail_tripwire_keeps_what_the_sdk_keeps_or_rolls_back(memory: Any) -> None:
    """The SDK's persistence rules apply unchanged: same items as its SQLiteSession keeps."""

    def block(ctx: Any, agent: Any, input: Any) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=True)

    def tripped_agent() -> Agent[Any]:
        return Agent(
            name="Assistant",
            model=ScriptedModel([[assistant_message("unsafe reply")]]),
            input_guardrails=[InputGuardrail(guardrail_function=block, run_in_parallel=False)],
        )

    sdk_session = SQLiteSession("g")
    with pytest.raises(InputGuardrailTripwireTriggered):
        await agents.Runner.run(tripped_agent(), "bad input", session=sdk_session)
    keep = RunConfig(memory=memory, session_id="g", failed_runs="keep")
    with pytest.raises(InputGuardrailTripwireTriggered):
        await Runner.run(tripped_agent(), "bad input", run_config=keep)
    assert await memory.get_messages("g") == await sdk_session.get_items() != []
    sdk_session.close()

    # By default a failed run is rolled back: the session is as it was before it, on every
    # memory, the spec's three methods alone included (the run's items are never written).
    with pytest.raises(InputGuardrailTripwireTriggered):
        await Runner.run(
            tripped_agent(), "more bad input", run_config=RunConfig(memory=memory, session_id="g")
        )
    assert await memory.get_messages("g") == [{"content": "bad input", "role": "user"}]


async def test_session_and_memory_together_are_refused(memory: Any, sqlite_memory: Any) -> None:
    agent = Agent(name="Assistant", model=ScriptedModel([[assistant_message("x")]]))
    with pytest.raises(ValueError, match="not both"):
        await Runner.run(
            agent,
            "hi",
            run_config=RunConfig(memory=memory, session_id="a"),
            session=sqlite_memory.session("b"),
        )


async def test_session_settings_as_a_dict_work_with_the_sdk_runner(memory: Any) -> None:
    from agents import SessionSettings

    from tests.conftest import bound

    session = bound(memory, "dict-settings")
    if hasattr(memory, "session"):
        session = memory.session("dict-settings", {"limit": 1})
    await session.add_items([{"role": "user", "content": str(i)} for i in range(3)])
    model = ScriptedModel([[assistant_message("ok")]])
    await agents.Runner.run(
        Agent(name="A", model=model),
        "next",
        session=session,
        run_config=agents.RunConfig(session_settings=SessionSettings(limit=2)),
    )
    assert texts(model.last_call.input) == ["1", "2", "next"]


async def test_a_history_window_after_a_tool_turn_is_whole(memory: Any) -> None:
    from agentsession import HistoryWindow

    @function_tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    model = ScriptedModel(
        [
            [function_call("lookup", {"key": "k"}, call_id="call_k")],
            [assistant_message("found it")],
            [assistant_message("second answer")],
        ]
    )
    agent = Agent(name="A", model=model, tools=[lookup])
    await Runner.run(agent, "look up k", run_config=RunConfig(memory=memory, session_id="w"))
    # Stored: user, call, output, answer. The newest 2 would cut the pair in two.
    config = RunConfig(memory=memory, session_id="w", history_window=HistoryWindow(max_items=2))
    await Runner.run(agent, "and then?", run_config=config)
    sent = [item.get("type", "message") for item in model.last_call.input]
    assert sent == ["message", "message"]  # the answer, then the new input: nothing cut
    assert len(await memory.get_messages("w")) == 6  # windowing deleted nothing


#: The store methods a run could use for its lease and its history.
_RUN_PATH = (
    "get_messages", "add_messages", "try_lock", "unlock", "lock_and_read", "write_and_unlock",
)  # fmt: skip


def _record_store_calls(memory: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record ``(method, thread ident)`` of each run-path call on ``memory.store``."""
    import threading

    calls: list[tuple[str, int]] = []
    for name in _RUN_PATH:
        method = getattr(memory.store, name)

        def recording(*args: Any, _name: str = name, _method: Any = method, **kw: Any) -> Any:
            calls.append((_name, threading.get_ident()))
            return _method(*args, **kw)

        monkeypatch.setattr(memory.store, name, recording)
    return calls


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_a_run_takes_its_session_and_history_in_one_store_call_and_ends_in_one(
    store_memory: Any, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    model = ScriptedModel([[assistant_message("one")], [assistant_message("two")]])
    agent = Agent(name="Assistant", model=model)
    config = RunConfig(memory=store_memory, session_id="s")
    await run_with(method, agent, "first", config)
    calls = _record_store_calls(store_memory, monkeypatch)
    assert await run_with(method, agent, "second", config) == "two"
    run_calls = list(calls)

    # The model saw the history that the lease call read, and the turn was written whole.
    assert texts(model.last_call.input) == ["first", "one", "second"]
    assert [name for name, _ in run_calls] == ["lock_and_read", "write_and_unlock"]
    assert texts(await store_memory.get_messages("s")) == ["first", "one", "second", "two"]
    if method == "run_sync":  # it blocks anyway: the store work is done in its own thread
        assert {thread for _, thread in run_calls} == {threading.get_ident()}


@pytest.mark.parametrize(
    ("settings", "window", "seen"),
    [
        (None, None, ["a", "ra", "b", "rb", "c"]),
        ({"limit": 2}, None, ["b", "rb", "c"]),
        (None, {"max_items": 3}, ["ra", "b", "rb", "c"]),
    ],
)
async def test_the_first_read_made_with_the_lease_is_the_one_the_sdk_asks_for(
    store_memory: Any, settings: Any, window: Any, seen: list[str]
) -> None:
    from agents.memory import SessionSettings

    from agentsession import HistoryWindow

    for text in ("a", "b"):
        await store_memory.add_messages(
            "s",
            [{"role": "user", "content": text}, {"role": "assistant", "content": f"r{text}"}],
        )
    model = ScriptedModel([[assistant_message("rc")]])
    config = RunConfig(
        memory=store_memory,
        session_id="s",
        session_settings=None if settings is None else SessionSettings(**settings),
        history_window=None if window is None else HistoryWindow(**window),
    )
    await Runner.run(Agent(name="A", model=model), "c", run_config=config)
    assert texts(model.last_call.input) == seen
