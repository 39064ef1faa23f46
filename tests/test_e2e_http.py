"""End to end through real HTTP: the real openai client calls a loopback Responses server.

No model is configured on the agents, so every run takes the SDK's default path (the
default provider, the default OpenAI client, ``OPENAI_BASE_URL``), as a user's would.
What the assertions read is what the model was sent.
"""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentsession import (
    Agent,
    HistoryWindow,
    RunConfig,
    Runner,
    SQLiteSessionMemory,
    function_tool,
)
from tests.conftest import RUNNER_METHODS, run_in_threads, run_with
from tests.responses_server import input_items, tool_responder, user_texts

ROOT = Path(__file__).resolve().parents[1]


def kinds(body: dict[str, Any]) -> list[str]:
    return [
        item.get("type", "message") + (f":{item['role']}" if "role" in item else "")
        for item in input_items(body)
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_turn_two_carries_turn_one(
    model_server: Any, sqlite_memory: SQLiteSessionMemory, method: str
) -> None:
    agent = Agent(name="Assistant", instructions="Reply very concisely.")
    config = RunConfig(memory=sqlite_memory, session_id=f"e2e-{method}")
    first = await run_with(method, agent, "What city is the Golden Gate Bridge in?", config)
    second = await run_with(method, agent, "What state is it in?", config)

    assert first == "echo: What city is the Golden Gate Bridge in? (seen 1 user messages)"
    assert second == "echo: What state is it in? (seen 2 user messages)"
    last = model_server.new_requests()[-1]
    assert kinds(last) == ["message:user", "message:assistant", "message:user"]
    assert input_items(last)[1]["content"][0]["text"] == first


@pytest.mark.anyio
@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_tool_calls_and_outputs_reach_the_model_in_order(
    model_server: Any, sqlite_memory: SQLiteSessionMemory, method: str
) -> None:
    model_server.responder = tool_responder("weather", "get_weather", {"city": "Paris"})

    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    agent = Agent(name="Assistant", tools=[get_weather])
    config = RunConfig(memory=sqlite_memory, session_id=f"tools-{method}")
    assert await run_with(method, agent, "weather in Paris?", config) == "tool said: sunny in Paris"
    await run_with(method, agent, "thanks", config)

    # The server checks pairing and answers 400 to a broken exchange, so reaching here
    # means every request it got had each call next to its output.
    last = model_server.new_requests()[-1]
    assert kinds(last) == [
        "message:user",
        "function_call",
        "function_call_output",
        "message:assistant",
        "message:user",
    ]
    call, output = input_items(last)[1:3]
    assert call["call_id"] == output["call_id"]
    assert output["output"] == "sunny in Paris"


@pytest.mark.anyio
async def test_a_window_after_a_tool_turn_is_accepted_by_the_api(
    model_server: Any, sqlite_memory: SQLiteSessionMemory
) -> None:
    model_server.responder = tool_responder("weather", "get_weather", {"city": "Oslo"})

    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"snow in {city}"

    agent = Agent(name="Assistant", tools=[get_weather])
    for max_items in range(1, 5):
        session_id = f"window-{max_items}"
        plain = RunConfig(memory=sqlite_memory, session_id=session_id)
        await Runner.run(agent, "weather?", run_config=plain)
        # Each window cuts the stored user/call/output/answer turn at another place; the
        # server answers 400 to any broken exchange.
        windowed = RunConfig(
            memory=sqlite_memory,
            session_id=session_id,
            history_window=HistoryWindow(max_items=max_items),
        )
        result = await Runner.run(agent, "and now?", run_config=windowed)
        assert result.final_output.startswith("echo: and now?")
        assert len(input_items(model_server.new_requests()[-1])) <= max_items + 1


@pytest.mark.anyio
async def test_sessions_are_isolated_and_clear_works(
    model_server: Any, sqlite_memory: SQLiteSessionMemory
) -> None:
    agent = Agent(name="Assistant")
    alice = RunConfig(memory=sqlite_memory, session_id="alice")
    bob = RunConfig(memory=sqlite_memory, session_id="bob")
    await Runner.run(agent, "I am Alice", run_config=alice)
    await Runner.run(agent, "I am Bob", run_config=bob)
    assert user_texts(model_server.new_requests()[-1]) == ["I am Bob"]

    await sqlite_memory.clear_session("alice")
    await Runner.run(agent, "Who am I?", run_config=alice)
    assert user_texts(model_server.new_requests()[-1]) == ["Who am I?"]
    await Runner.run(agent, "Still Bob?", run_config=bob)
    assert user_texts(model_server.new_requests()[-1]) == ["I am Bob", "Still Bob?"]


@pytest.mark.anyio
async def test_two_agents_share_a_session(
    model_server: Any, sqlite_memory: SQLiteSessionMemory
) -> None:
    config = RunConfig(memory=sqlite_memory, session_id="user_123")
    await Runner.run(Agent(name="Support"), "My order is late", run_config=config)
    await Runner.run(Agent(name="Billing"), "Refund it", run_config=config)
    last = model_server.new_requests()[-1]
    assert user_texts(last) == ["My order is late", "Refund it"]
    assert kinds(last) == ["message:user", "message:assistant", "message:user"]


def test_run_sync_then_asyncio_run_in_one_process(
    model_server: Any, sqlite_memory: SQLiteSessionMemory
) -> None:
    """The SDK's own runner fails here ("bound to a different event loop")."""
    agent = Agent(name="Assistant")
    config = RunConfig(memory=sqlite_memory, session_id="mixed")
    Runner.run_sync(agent, "one", run_config=config)
    asyncio.run(Runner.run(agent, "two", run_config=config))
    asyncio.run(Runner.run(agent, "three", run_config=config))
    assert Runner.run_sync(agent, "four", run_config=config).final_output == (
        "echo: four (seen 4 user messages)"
    )


def test_eight_threads_on_one_file(model_server: Any, tmp_path: Path) -> None:
    memory = SQLiteSessionMemory(tmp_path / "threads.db")
    agent = Agent(name="Assistant")

    def worker(n: int) -> None:
        config = RunConfig(memory=memory, session_id=f"thread-{n}")
        for turn in range(3):
            Runner.run_sync(agent, f"thread {n} turn {turn}", run_config=config)

    run_in_threads(8, worker)
    finals = [b for b in model_server.new_requests() if len(user_texts(b)) == 3]
    assert len(finals) == 8
    for body in finals:
        n = user_texts(body)[0].split()[1]
        assert user_texts(body) == [f"thread {n} turn {t}" for t in range(3)]
    memory.close()


def test_a_second_process_sees_the_first_ones_history(model_server: Any, tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    child = textwrap.dedent(
        f"""
        from agentsession import Agent, RunConfig, Runner, SQLiteSessionMemory
        import agents
        agents.set_tracing_disabled(True)
        memory = SQLiteSessionMemory({str(db)!r})
        config = RunConfig(memory=memory, session_id="handover")
        print(Runner.run_sync(Agent(name="A"), "said in the first process", run_config=config)
              .final_output)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    memory = SQLiteSessionMemory(db)
    config = RunConfig(memory=memory, session_id="handover")
    Runner.run_sync(Agent(name="A"), "said in the second", run_config=config)
    assert user_texts(model_server.new_requests()[-1]) == [
        "said in the first process",
        "said in the second",
    ]
    memory.close()


def test_the_specs_complete_example_runs_unchanged(model_server: Any, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "spec_complete_example.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "Assistant: echo: What state is it in? (seen 2 user messages)" in done.stdout
    assert "Assistant: echo: What's the population of that state? (seen 3 user messages)" in (
        done.stdout
    )
    assert (tmp_path / "conversation_history.db").exists()


def _quickstart(cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_the_quickstart_runs_as_a_script_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    out = _quickstart(tmp_path, env)
    assert "OPENAI_API_KEY is not set: the offline demo model answers" in out
    assert 'you first asked "What city is the Golden Gate Bridge in?"' in out
    assert 'and just before this, "What state is it in?"' in out  # the run_sync turn
    assert (tmp_path / "conversations.db").exists()
    again = _quickstart(tmp_path, env)  # a second run continues the same session
    assert "6 earlier messages" in again


def test_the_quickstart_talks_to_openai_with_a_key(model_server: Any, tmp_path: Path) -> None:
    out = _quickstart(tmp_path, {**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"})
    assert "offline" not in out
    assert "Assistant: echo: What's the population? (seen 3 user messages)" in out


QUICK_START = """
from agentsession import Agent, Runner, RunConfig, SQLiteSessionMemory

# Create agent
agent = Agent(
    name="Assistant",
    instructions="Reply very concisely.",
)

# Create a session memory instance
memory = SQLiteSessionMemory()

# Configure run with session memory and session ID
run_config = RunConfig(
    memory=memory,  # Use our session memory instance
    session_id="conversation_123"
)

# First turn
result = await Runner.run(agent, "What city is the Golden Gate Bridge in?", run_config=run_config)
print(result.final_output)  # "San Francisco"

# Second turn - agent automatically remembers previous context
result = await Runner.run(agent, "What state is it in?", run_config=run_config)
print(result.final_output)  # "California"

# Also works with synchronous runner
result = Runner.run_sync(agent, "What's the population?", run_config=run_config)
print(result.final_output)  # "Approximately 39 million"
"""


@pytest.mark.anyio
async def test_the_specs_quick_start_runs_with_top_level_await(
    model_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in a notebook: top-level await, then run_sync inside the running loop."""
    code = compile(QUICK_START, "quick_start", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    await eval(code, {})
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "echo: What city is the Golden Gate Bridge in? (seen 1 user messages)",
        "echo: What state is it in? (seen 2 user messages)",
        "echo: What's the population? (seen 3 user messages)",
    ]
