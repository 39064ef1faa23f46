"""Runner.run_sync where users call it: threads, running loops, nested calls, Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents.models.interface import Model
from agents.testing import ScriptedModel, assistant_message, function_call

from agentsession import Agent, RunConfig, Runner, SQLiteSessionMemory, function_tool
from tests.conftest import run_in_threads


def contents(items: list[dict[str, Any]]) -> list[Any]:
    return [item.get("content") if item.get("role") == "user" else item["type"] for item in items]


def test_eight_threads_share_one_memory_each_with_its_session(
    sqlite_memory: SQLiteSessionMemory,
) -> None:
    def worker(n: int) -> None:
        model = ScriptedModel([[assistant_message(f"reply {n}.{turn}")] for turn in range(3)])
        agent = Agent(name="Assistant", model=model)
        config = RunConfig(memory=sqlite_memory, session_id=f"user-{n}")
        for turn in range(3):
            Runner.run_sync(agent, f"question {n}.{turn}", run_config=config)
        assert contents(model.last_call.input) == [
            f"question {n}.0",
            "message",
            f"question {n}.1",
            "message",
            f"question {n}.2",
        ]

    run_in_threads(8, worker)
    for n in range(8):
        assert len(sqlite_memory.store.get_messages(f"user-{n}")) == 6


def test_run_sync_then_asyncio_run_in_one_process(sqlite_memory: SQLiteSessionMemory) -> None:
    model = ScriptedModel([[assistant_message("sync")], [assistant_message("async")]])
    agent = Agent(name="Assistant", model=model)
    config = RunConfig(memory=sqlite_memory, session_id="mixed")
    Runner.run_sync(agent, "from sync", run_config=config)
    result = asyncio.run(Runner.run(agent, "from async", run_config=config))
    assert result.final_output == "async"
    assert contents(model.last_call.input) == ["from sync", "message", "from async"]


def test_a_sync_tool_may_itself_call_run_sync(sqlite_memory: SQLiteSessionMemory) -> None:
    inner_model = ScriptedModel([[assistant_message("inner answer")]])
    inner = Agent(name="Inner", model=inner_model)

    @function_tool
    def ask_inner(question: str) -> str:
        """Ask the inner agent."""
        return Runner.run_sync(inner, question).final_output

    outer_model = ScriptedModel(
        [[function_call("ask_inner", {"question": "q"}, call_id="c1")], [assistant_message("ok")]]
    )
    outer = Agent(name="Outer", model=outer_model, tools=[ask_inner])
    result = Runner.run_sync(
        outer, "go", run_config=RunConfig(memory=sqlite_memory, session_id="nested")
    )
    assert result.final_output == "ok"
    outputs = [i for i in sqlite_memory.store.get_messages("nested") if "output" in i]
    assert outputs[0]["output"] == "inner answer"


class _HangingModel(Model):
    """A model that waits forever, telling the test when it started and if it was cancelled."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="SIGINT is delivered to the main thread only",
)
def test_ctrl_c_during_run_sync_cancels_the_run(sqlite_memory: SQLiteSessionMemory) -> None:
    model = _HangingModel()
    agent = Agent(name="Assistant", model=model)
    config = RunConfig(memory=sqlite_memory, session_id="interrupted")

    def press_ctrl_c() -> None:
        model.started.wait(timeout=30)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        Runner.run_sync(agent, "a question that never gets an answer", run_config=config)
    presser.join()
    # run_sync returned only after the run's task had wound down, and the interrupted
    # turn was rolled back: nothing of it is stored.
    assert model.cancelled.is_set()
    assert sqlite_memory.store.get_messages("interrupted") == []

    # The runner is still usable afterwards.
    follow_up = Agent(name="Assistant", model=ScriptedModel([[assistant_message("back")]]))
    assert Runner.run_sync(follow_up, "hello?", run_config=config).final_output == "back"


def test_run_sync_sees_the_callers_context_variables() -> None:
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[str] = []

    @function_tool
    def whoami() -> str:
        """Return the request id."""
        seen.append(request_id.get())
        return "done"

    model = ScriptedModel([[function_call("whoami", {}, call_id="c1")], [assistant_message("ok")]])
    request_id.set("req-42")
    Runner.run_sync(Agent(name="A", model=model, tools=[whoami]), "hi")
    assert seen == ["req-42"]


def test_run_sync_reuses_the_stores_connections(tmp_path: Any) -> None:
    # Each run_sync call used to be an anyio root task of its own, so the worker thread,
    # and with it the thread's SQLite connection, ended with every run.
    with SQLiteSessionMemory(tmp_path / "s.db") as memory:
        model = ScriptedModel([[assistant_message(f"reply {n}")] for n in range(20)])
        agent = Agent(name="Assistant", model=model)
        config = RunConfig(memory=memory, session_id="reused")
        opened = memory.store.connections_opened
        for n in range(20):
            Runner.run_sync(agent, f"question {n}", run_config=config)
        assert memory.store.connections_opened - opened <= 2
        assert len(memory.store.get_messages("reused")) == 40


_KILLED_MID_RUN = """
import sys, threading
from agents.models.interface import Model
from agentsession import Agent, RunConfig, Runner, SQLiteSessionMemory

class Hang(Model):
    async def get_response(self, *args, **kwargs):
        print("in the model", flush=True)
        threading.Event().wait()

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError

memory = SQLiteSessionMemory(sys.argv[1])
Runner.run_sync(Agent(name="A", model=Hang()), "never answered",
                run_config=RunConfig(memory=memory, session_id="killed"))
"""


def test_a_process_killed_mid_run_leaves_nothing_and_blocks_nobody(tmp_path: Any) -> None:
    import subprocess
    import sys

    path = tmp_path / "s.db"
    with SQLiteSessionMemory(path) as memory:
        config = RunConfig(memory=memory, session_id="killed")
        Runner.run_sync(
            Agent(name="A", model=ScriptedModel([[assistant_message("earlier")]])),
            "an earlier question",
            run_config=config,
        )
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_MID_RUN, str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "in the model\n"
        finally:
            child.kill()  # SIGKILL, with the run's input saved by the SDK and not written
            child.wait(timeout=30)
        assert contents(memory.store.get_messages("killed")) == ["an earlier question", "message"]
        # The dead process's lease went with it: the next run does not wait for it.
        now = RunConfig(memory=memory, session_id="killed", session_lock="fail")
        answer = Agent(name="A", model=ScriptedModel([[assistant_message("at once")]]))
        assert Runner.run_sync(answer, "next", run_config=now).final_output == "at once"
