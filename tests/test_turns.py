"""Whole turns: a failed run leaves nothing, and two runs on one session never interleave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import MaxTurnsExceeded
from agents.models.interface import Model
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

from agentsession import Agent, RunConfig, Runner, SessionBusy, function_tool

pytestmark = pytest.mark.anyio


@function_tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


async def history_of(memory: Any, session_id: str) -> list[Any]:
    return [item.get("content", item.get("type")) for item in await memory.get_messages(session_id)]


async def test_a_run_failing_after_a_tool_turn_leaves_the_session_as_it_was(memory: Any) -> None:
    model = ScriptedModel(
        [
            [assistant_message("first answer")],
            [function_call("lookup", {"key": "k"}, call_id="c1")],
            ModelStep.raise_error(RuntimeError("the model fell over")),
        ]
    )
    agent = Agent(name="A", model=model, tools=[lookup])
    config = RunConfig(memory=memory, session_id="s")
    await Runner.run(agent, "first", run_config=config)
    before = await memory.get_messages("s")

    with pytest.raises(RuntimeError, match="fell over"):
        await Runner.run(agent, "second", run_config=config)
    # Every memory, the spec's three methods alone included: the run never wrote.
    assert await memory.get_messages("s") == before


async def test_max_turns_exceeded_is_rolled_back_and_keep_keeps_it(sqlite_memory: Any) -> None:
    def looping_model() -> ScriptedModel:
        return ScriptedModel([[function_call("lookup", {"key": "k"}, call_id="c1")]])

    config = RunConfig(memory=sqlite_memory, session_id="s")
    with pytest.raises(MaxTurnsExceeded):
        await Runner.run(
            Agent(name="A", model=looping_model(), tools=[lookup]),
            "go",
            run_config=config,
            max_turns=1,
        )
    assert await sqlite_memory.get_messages("s") == []

    keep = RunConfig(memory=sqlite_memory, session_id="s", failed_runs="keep")
    with pytest.raises(MaxTurnsExceeded):
        await Runner.run(
            Agent(name="A", model=looping_model(), tools=[lookup]),
            "go",
            run_config=keep,
            max_turns=1,
        )
    assert await history_of(sqlite_memory, "s") == ["go", "function_call", "function_call_output"]


class _GatedModel(Model):
    """Answers each call after its gate opens; records what each call was sent."""

    def __init__(self) -> None:
        self.inputs: list[list[Any]] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> Any:
        self.inputs.append(list(input))
        self.entered.set()
        await self.gate.wait()
        reply = ScriptedModel([[assistant_message(f"reply {len(self.inputs)}")]])
        return await reply.get_response(system_instructions, input, *args, **kwargs)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


def texts(items: list[Any]) -> list[str]:
    out = []
    for item in items:
        content = item.get("content")
        out.append(content if isinstance(content, str) else content[0]["text"])
    return out


async def test_two_runs_on_one_session_take_turns(
    memory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentsession._run_guard import RunGuard

    refused = asyncio.Event()
    try_lock = RunGuard._take

    async def spying_try_lock(self: RunGuard) -> bool:
        taken = await try_lock(self)
        if not taken:
            refused.set()
        return taken

    monkeypatch.setattr(RunGuard, "_take", spying_try_lock)
    model = _GatedModel()
    agent = Agent(name="A", model=model)
    config = RunConfig(memory=memory, session_id="shared")

    first = asyncio.create_task(Runner.run(agent, "first", run_config=config))
    await model.entered.wait()  # the first run is inside its model call, holding the session
    second = asyncio.create_task(Runner.run(agent, "second", run_config=config))
    await refused.wait()  # the second run found the session taken and is waiting
    assert len(model.inputs) == 1
    model.gate.set()
    await asyncio.gather(first, second)

    # The second run saw the first run's whole turn, and the turns are stored whole.
    assert texts(model.inputs[1]) == ["first", "reply 1", "second"]
    assert texts(await memory.get_messages("shared")) == ["first", "reply 1", "second", "reply 2"]


async def test_session_lock_fail_and_lock_timeout_raise_session_busy(sqlite_memory: Any) -> None:
    store = sqlite_memory.store
    # Another process's run holds the session (its lease row, as that process writes it).
    assert store.try_lock("held", "another-host:1234:run", 30.0)
    agent = Agent(name="A", model=ScriptedModel([[assistant_message("finally")]]))

    fail = RunConfig(memory=sqlite_memory, session_id="held", session_lock="fail")
    with pytest.raises(SessionBusy, match="'held' is in use by another run"):
        await Runner.run(agent, "hi", run_config=fail)
    wait = RunConfig(memory=sqlite_memory, session_id="held", lock_timeout=0.1)
    with pytest.raises(SessionBusy, match="lock_timeout=0.1 s"):
        await Runner.run(agent, "hi", run_config=wait)
    assert await sqlite_memory.get_messages("held") == []

    store.unlock("held", "another-host:1234:run")
    result = await Runner.run(agent, "hi", run_config=wait)
    assert result.final_output == "finally"
    # The run gave its lease back: another owner can take the session now.
    assert store.try_lock("held", "another-host:1234:run", 30.0)


def test_run_config_refuses_unknown_turn_options() -> None:
    with pytest.raises(ValueError, match="failed_runs"):
        RunConfig(failed_runs="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="session_lock"):
        RunConfig(session_lock="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lock_timeout"):
        RunConfig(lock_timeout=-1)


async def test_a_failed_streamed_run_is_rolled_back_when_its_stream_ends(memory: Any) -> None:
    model = ScriptedModel(
        [
            [assistant_message("first answer")],
            [function_call("lookup", {"key": "k"}, call_id="c1")],
            ModelStep.raise_error(RuntimeError("the model fell over")),
        ]
    )
    agent = Agent(name="A", model=model, tools=[lookup])
    config = RunConfig(memory=memory, session_id="streamed")
    await Runner.run(agent, "first", run_config=config)
    before = await memory.get_messages("streamed")

    result = Runner.run_streamed(agent, "second", run_config=config)
    with pytest.raises(RuntimeError, match="fell over"):
        async for _ in result.stream_events():
            pass
    assert await memory.get_messages("streamed") == before


async def test_two_streamed_runs_on_one_session_take_turns(memory: Any) -> None:
    model = ScriptedModel([[assistant_message("one")], [assistant_message("two")]])
    agent = Agent(name="A", model=model)
    config = RunConfig(memory=memory, session_id="s")

    first = Runner.run_streamed(agent, "first", run_config=config)
    second = Runner.run_streamed(agent, "second", run_config=config)
    # The second run waits for the first, whose turn ends when its stream is consumed.
    async for _ in first.stream_events():
        pass
    async for _ in second.stream_events():
        pass
    assert texts(model.last_call.input) == ["first", "one", "second"]
    assert texts(await memory.get_messages("s")) == ["first", "one", "second", "two"]


async def test_a_stream_nobody_consumes_does_not_hold_the_session(sqlite_memory: Any) -> None:
    model = ScriptedModel([[assistant_message("unread")], [assistant_message("next")]])
    agent = Agent(name="A", model=model)
    config = RunConfig(memory=sqlite_memory, session_id="s", lock_timeout=5)
    unread = Runner.run_streamed(agent, "first", run_config=config)
    assert unread.run_loop_task is not None
    await unread.run_loop_task
    result = await Runner.run(agent, "second", run_config=config)
    assert result.final_output == "next"
    assert texts(model.last_call.input) == ["first", "unread", "second"]


async def test_a_run_writes_its_items_in_one_add_when_it_ends(
    memory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    adds: list[list[Any]] = []
    add_messages = memory.add_messages

    async def counting_add(session_id: str, messages: Any, **options: Any) -> None:
        if messages:
            adds.append(list(messages))
        await add_messages(session_id, messages, **options)  # options: the run's record

    monkeypatch.setattr(memory, "add_messages", counting_add)
    if hasattr(memory, "write_and_unlock"):  # a RunMemory writes a run's items with this
        write_and_unlock = memory.write_and_unlock

        async def counting_write(
            session_id: str, owner: str, messages: Any, **options: Any
        ) -> None:
            if messages:
                adds.append(list(messages))
            await write_and_unlock(session_id, owner, messages, **options)

        monkeypatch.setattr(memory, "write_and_unlock", counting_write)
    model = ScriptedModel(
        [[function_call("lookup", {"key": "k"}, call_id="c1")], [assistant_message("done")]]
    )
    agent = Agent(name="A", model=model, tools=[lookup])
    await Runner.run(agent, "go", run_config=RunConfig(memory=memory, session_id="once"))
    # The input, the call, its output and the reply: one add, in order.
    assert [len(batch) for batch in adds] == [4]
    assert await history_of(memory, "once") == [
        "go",
        "function_call",
        "function_call_output",
        [{"annotations": [], "text": "done", "type": "output_text", "logprobs": []}],
    ]


async def test_readers_see_a_running_turn_only_once_it_has_ended(memory: Any) -> None:
    model = _GatedModel()
    agent = Agent(name="A", model=model)
    config = RunConfig(memory=memory, session_id="s")
    running = asyncio.create_task(Runner.run(agent, "question", run_config=config))
    await model.entered.wait()  # the SDK has saved the input by now; it is not written yet
    assert await memory.get_messages("s") == []
    model.gate.set()
    await running
    assert texts(await memory.get_messages("s")) == ["question", "reply 1"]


async def test_a_run_ending_with_pending_approvals_keeps_what_the_sdk_saved(
    sqlite_memory: Any,
) -> None:
    @function_tool(needs_approval=True)
    def delete_everything(reason: str) -> str:
        """Delete everything (asks a person first)."""
        return "deleted"

    def approval_agent() -> Agent[Any]:
        model = ScriptedModel([[function_call("delete_everything", {"reason": "r"}, call_id="c1")]])
        return Agent(name="A", model=model, tools=[delete_everything])

    agent = approval_agent()
    config = RunConfig(memory=sqlite_memory, session_id="approval")
    result = await Runner.run(agent, "clean up", run_config=config)
    assert result.interruptions
    ours = await sqlite_memory.get_messages("approval")

    # The SDK's own session, given the same run, keeps the same items.
    from agents import Runner as SDKRunner
    from agents import SQLiteSession

    sdk_session = SQLiteSession("approval")
    sdk_result = await SDKRunner.run(approval_agent(), "clean up", session=sdk_session)
    assert sdk_result.interruptions
    assert ours == await sdk_session.get_items()
    assert ours  # the question, at least, was kept
    sdk_session.close()


async def test_a_runs_items_are_checked_and_encoded_once(
    store_memory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agentsession.stores.base as store_base

    encoded: list[int] = []
    encode = store_base.encode_messages

    def counting(messages: Any) -> list[str]:
        encoded.append(len(messages))
        return encode(messages)

    monkeypatch.setattr(store_base, "encode_messages", counting)
    agent = Agent(name="A", model=ScriptedModel([[assistant_message("done")]]))
    await Runner.run(agent, "go", run_config=RunConfig(memory=store_memory, session_id="s"))
    # The bound session encoded them when the SDK added them; the store wrote those texts.
    assert encoded == []
    assert await history_of(store_memory, "s") == [
        "go",
        [{"annotations": [], "text": "done", "type": "output_text", "logprobs": []}],
    ]
    # Outside a run too: the bound session's add hands the store its texts.
    await store_memory.session("t").add_items([{"role": "user", "content": "hello"}])
    assert encoded == []
    assert await history_of(store_memory, "t") == ["hello"]


class _SlowRenewalStore:
    """A store whose leases expire, and whose lease renewal (a second ``try_lock`` of an
    owner) is slow: it waits until the run's write has begun, or 1 s at most."""

    def __init__(self, store: Any) -> None:
        import threading

        self._store = store
        self.lease_expires = True
        self.lease_blocks = True  # renewals run in the memory's worker threads
        self.events: list[str] = []
        self.renewing = threading.Event()
        self.writing = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def lock_and_read(self, *args: Any, **kwargs: Any) -> Any:
        self.events.append("taken")
        return self._store.lock_and_read(*args, **kwargs)

    def try_lock(self, session_id: str, owner: str, lease: float) -> bool:
        # Only a renewal calls this: the run took the lease with lock_and_read.
        self.renewing.set()
        self.writing.wait(1.0)
        self.events.append("renewed")
        return bool(self._store.try_lock(session_id, owner, lease))

    def write_and_unlock(self, session_id: str, owner: str, messages: Any, **options: Any) -> None:
        self.events.append("written")
        self.writing.set()
        self._store.write_and_unlock(session_id, owner, messages, **options)  # the run's record


async def test_a_lease_renewal_under_way_when_the_run_ends_cannot_keep_the_lease(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agentsession._run_guard as run_guard
    from agentsession import SQLiteStore, StoreMemory

    monkeypatch.setattr(run_guard, "LEASE_SECONDS", 0.03)  # renewed every 10 ms
    store = _SlowRenewalStore(SQLiteStore(tmp_path / "s.db"))
    memory = StoreMemory(store)  # type: ignore[arg-type]

    async def reply_once_renewing(call: Any) -> Any:
        await asyncio.get_running_loop().run_in_executor(None, store.renewing.wait, 10)
        return [assistant_message("done")]

    agent = Agent(name="A", model=ScriptedModel([ModelStep.respond(reply_once_renewing)]))
    try:
        await Runner.run(agent, "go", run_config=RunConfig(memory=memory, session_id="s"))
        # The run waited for the renewal under way before writing and giving the lease
        # back, so the lease is free now, not renewed for another lease period.
        assert store.events[-2:] == ["renewed", "written"]
        assert store.try_lock("s", "next-run", 30)
    finally:
        memory.close()
