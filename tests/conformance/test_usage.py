"""The usage ledger, for every engine, end to end: the real ``openai`` client calls the
loopback Responses server, which reports different usage figures for every request, and
the ledger must hold exactly their sums, per run and per session."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from agents import MaxTurnsExceeded

from agentsession import (
    Agent,
    RunConfig,
    Runner,
    SessionBudgetExceeded,
    StoreMemory,
    function_tool,
)
from agentsession.protocol import RunRecord, SessionUsage
from tests.conftest import RUNNER_METHODS, run_with
from tests.responses_server import tool_responder

pytestmark = pytest.mark.anyio


def figures(number: int) -> dict[str, int]:
    """What the server reports for its request ``number``: different for each one."""
    return {
        "input_tokens": 100 + 7 * number,
        "output_tokens": 10 + number % 13,
        "cached_tokens": number % 5,
        "reasoning_tokens": number % 3,
    }


@pytest.fixture
def metered(model_server: Any) -> Iterator[Any]:
    """The loopback server reporting ``figures``; ``metered.new_usages()`` lists what it
    reported since the test started."""
    start = len(model_server.usages)
    model_server.usage = figures
    model_server.new_usages = lambda: model_server.usages[start:]
    yield model_server
    model_server.usage = None


@pytest.fixture
def memory(store: Any) -> Iterator[StoreMemory]:
    memory = StoreMemory(store)
    yield memory
    memory.close()


def summed(usages: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "requests": len(usages),
        "input_tokens": sum(u["input_tokens"] for u in usages),
        "output_tokens": sum(u["output_tokens"] for u in usages),
        "total_tokens": sum(u["total_tokens"] for u in usages),
        "cached_input_tokens": sum(u["input_tokens_details"]["cached_tokens"] for u in usages),
        "reasoning_tokens": sum(u["output_tokens_details"]["reasoning_tokens"] for u in usages),
    }


def counts(record: RunRecord | SessionUsage) -> dict[str, int]:
    return {name: getattr(record, name) for name in summed([])}


@function_tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def weather_agent() -> Agent[Any]:
    return Agent(name="Forecaster", model="gpt-test", tools=[get_weather])


async def run_failing(
    method: str,
    config: RunConfig,
    agent: Agent[Any] | None = None,
    text: str = "What is the weather?",
) -> None:
    """Run ``agent`` (the weather agent by default) with ``max_turns=1``: one model call
    (a tool call or a handoff), then ``MaxTurnsExceeded``, through the named ``Runner``
    method."""
    agent = weather_agent() if agent is None else agent
    if method == "run":
        await Runner.run(agent, text, run_config=config, max_turns=1)
    elif method == "run_sync":
        Runner.run_sync(agent, text, run_config=config, max_turns=1)
    else:
        result = Runner.run_streamed(agent, text, run_config=config, max_turns=1)
        async for _ in result.stream_events():
            pass


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_usage_is_the_sum_of_what_the_model_reported(
    metered: Any, memory: StoreMemory, method: str
) -> None:
    metered.responder = tool_responder("weather", "get_weather", {"city": "Paris"})
    config = RunConfig(memory=memory, session_id="ledger")
    agent = weather_agent()

    await run_with(method, agent, "What is the weather?", config)  # a tool turn: 2 calls
    first = metered.new_usages()
    await run_with(method, agent, "Thanks, bye", config)
    second = metered.new_usages()[len(first) :]

    assert (len(first), len(second)) == (2, 1)
    newest, oldest = await memory.runs("ledger")
    assert counts(oldest) == summed(first)
    assert counts(newest) == summed(second)
    usage = await memory.usage("ledger")
    assert counts(usage) == summed(first + second)
    assert usage.runs == 2
    assert (usage.first_run_at, usage.last_run_at) == (oldest.started_at, newest.ended_at)
    assert oldest.started_at <= oldest.ended_at <= newest.started_at <= newest.ended_at
    assert oldest.items_added + newest.items_added == memory.store.message_count("ledger")
    assert oldest.items_added == 4  # user, tool call, tool output, reply
    for record in (oldest, newest):
        assert (record.session_id, record.agent) == ("ledger", "Forecaster")
        assert record.model == "gpt-test"
        assert record.outcome == "completed"
    assert oldest.run_id != newest.run_id


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_a_failed_run_rolled_back_still_records_what_it_spent(
    metered: Any, memory: StoreMemory, method: str
) -> None:
    metered.responder = tool_responder("weather", "get_weather", {"city": "Oslo"})
    config = RunConfig(memory=memory, session_id="failing")
    with pytest.raises(MaxTurnsExceeded):
        await run_failing(method, config)

    assert await memory.get_messages("failing") == []  # rolled back
    (record,) = await memory.runs("failing")
    assert counts(record) == summed(metered.new_usages())
    assert record.requests == 1
    assert (record.outcome, record.items_added) == ("failed", 0)
    assert counts(await memory.usage("failing")) == summed(metered.new_usages())


async def test_a_failed_run_kept_records_its_items(metered: Any, memory: StoreMemory) -> None:
    metered.responder = tool_responder("weather", "get_weather", {"city": "Rome"})
    config = RunConfig(memory=memory, session_id="kept", failed_runs="keep")
    with pytest.raises(MaxTurnsExceeded):
        await run_failing("run", config)

    (record,) = await memory.runs("kept")
    assert record.outcome == "failed"
    assert record.items_added == memory.store.message_count("kept") > 0


async def test_a_cancelled_run_records_what_it_spent(metered: Any, memory: StoreMemory) -> None:
    import asyncio

    entered, never = asyncio.Event(), asyncio.Event()

    @function_tool
    async def slow_lookup(city: str) -> str:
        """Looks a city up, slowly."""
        entered.set()
        await never.wait()
        return city

    metered.responder = tool_responder("weather", "slow_lookup", {"city": "Lima"})
    agent = Agent(name="Forecaster", model="gpt-test", tools=[slow_lookup])
    config = RunConfig(memory=memory, session_id="cancelled")
    task = asyncio.ensure_future(Runner.run(agent, "What is the weather?", run_config=config))
    await entered.wait()  # the model has answered with the tool call; the tool is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (record,) = await memory.runs("cancelled")
    assert (record.outcome, record.items_added) == ("cancelled", 0)
    assert counts(record) == summed(metered.new_usages())
    assert record.requests == 1


def triage_agent() -> Agent[Any]:
    """Hands every request that says "help" to the Specialist (which has a tool)."""
    specialist = Agent(name="Specialist", model="gpt-test", tools=[get_weather])
    return Agent(name="Triage", model="gpt-test", handoffs=[specialist])


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_a_run_records_the_agent_that_produced_its_final_output(
    metered: Any, memory: StoreMemory, method: str
) -> None:
    metered.responder = tool_responder("help", "transfer_to_specialist", {})
    config = RunConfig(memory=memory, session_id="handoff")
    await run_with(method, triage_agent(), "I need help", config)

    (record,) = await memory.runs("handoff")
    assert record.agent == "Specialist"  # not the starting agent, Triage
    assert counts(record) == summed(metered.new_usages())  # both agents' model calls
    assert record.requests == 2


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_a_run_failing_after_a_handoff_records_the_agent_running_then(
    metered: Any, memory: StoreMemory, method: str
) -> None:
    metered.responder = tool_responder("help", "transfer_to_specialist", {})
    config = RunConfig(memory=memory, session_id="handoff-failed")
    with pytest.raises(MaxTurnsExceeded):  # the handoff is the one turn allowed
        await run_failing(method, config, triage_agent(), "I need help")

    (record,) = await memory.runs("handoff-failed")
    assert (record.agent, record.outcome) == ("Specialist", "failed")
    assert counts(record) == summed(metered.new_usages())


@function_tool(needs_approval=True)
def book_trip(city: str) -> str:
    """Book a trip (a person approves it first)."""
    return f"booked {city}"


async def run_state(method: str, agent: Agent[Any], input: Any, config: RunConfig) -> Any:
    """Run (or resume, ``input`` a ``RunState``) through the named method; the result."""
    if method == "run":
        return await Runner.run(agent, input, run_config=config)
    if method == "run_sync":
        return Runner.run_sync(agent, input, run_config=config)
    result = Runner.run_streamed(agent, input, run_config=config)
    async for _ in result.stream_events():
        pass
    return result


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_a_resumed_run_records_what_its_resumed_part_spent(
    metered: Any, memory: StoreMemory, method: str
) -> None:
    # Human in the loop: the run stops at a tool call awaiting approval; the person
    # approves; the run resumes from its state, runs the tool and calls the model again.
    metered.responder = tool_responder("trip", "book_trip", {"city": "Kyoto"})
    agent = Agent(name="Planner", model="gpt-test", tools=[book_trip])
    config = RunConfig(memory=memory, session_id="approval")
    first = await run_state(method, agent, "Plan a trip", config)
    assert first.interruptions
    before = metered.new_usages()
    assert len(before) == 1

    state = first.to_state()
    state.approve(first.interruptions[0])
    resumed = await run_state(method, agent, state, config)
    assert not resumed.interruptions
    after = metered.new_usages()[len(before) :]
    assert len(after) == 1

    newest, oldest = await memory.runs("approval")
    assert counts(oldest) == summed(before)
    assert counts(newest) == summed(after)  # only the resumed part, nothing twice
    assert (newest.outcome, newest.agent) == ("completed", "Planner")
    assert counts(await memory.usage("approval")) == summed(before + after)
    assert oldest.items_added + newest.items_added == memory.store.message_count("approval")


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_a_spent_budget_refuses_the_run_before_any_model_call(
    metered: Any, memory: StoreMemory, method: str
) -> None:
    agent = Agent(name="Assistant", model="gpt-test")
    await run_with(method, agent, "Hello", RunConfig(memory=memory, session_id="budget"))
    spent = (await memory.usage("budget")).total_tokens
    requests = len(metered.new_requests())

    # Under the budget: the run goes ahead.
    under = RunConfig(memory=memory, session_id="budget", max_session_tokens=spent + 1)
    await run_with(method, agent, "Again", under)
    spent = (await memory.usage("budget")).total_tokens
    requests = len(metered.new_requests())
    stored = memory.store.message_count("budget")

    at = RunConfig(memory=memory, session_id="budget", max_session_tokens=spent)
    with pytest.raises(SessionBudgetExceeded) as caught:
        await run_with(method, agent, "Once more", at)
    assert (caught.value.session_id, caught.value.total_tokens, caught.value.budget) == (
        "budget",
        spent,
        spent,
    )
    assert "'budget'" in str(caught.value) and str(spent) in str(caught.value)
    assert len(metered.new_requests()) == requests  # no model call
    assert memory.store.message_count("budget") == stored
    assert (await memory.usage("budget")).runs == 2  # a refused run records nothing
    # The session was let go: the next run with room in the budget takes it.
    await run_with(method, agent, "Fine", RunConfig(memory=memory, session_id="budget"))


async def test_a_budget_needs_a_memory_that_keeps_a_ledger() -> None:
    class Plain:
        async def get_messages(self, session_id: str) -> list[dict[str, Any]]:
            return []

        async def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
            pass

        async def clear_session(self, session_id: str) -> None:
            pass

    with pytest.raises(TypeError, match="max_session_tokens needs a memory.*Plain"):
        RunConfig(memory=Plain(), session_id="s", max_session_tokens=10)
    for bad in (0, -1, True, 1.5, "10"):
        with pytest.raises(ValueError, match="max_session_tokens must be an int"):
            RunConfig(max_session_tokens=bad)  # type: ignore[arg-type]


# -- the store side ------------------------------------------------------------------------

NOW = datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=timezone.utc)


def record(session_id: str, n: int, **changes: Any) -> RunRecord:
    values: dict[str, Any] = {
        "run_id": f"run-{n}",
        "session_id": session_id,
        "started_at": NOW + timedelta(seconds=10 * n),
        "ended_at": NOW + timedelta(seconds=10 * n + 3.5),
        "agent": "Agent ✓",
        "model": "gpt-test",
        "requests": n,
        "input_tokens": 100 * n,
        "output_tokens": 10 * n,
        "total_tokens": 110 * n,
        "cached_input_tokens": n,
        "reasoning_tokens": 2 * n,
        "items_added": 2,
        "outcome": "completed",
    }
    values.update(changes)
    return RunRecord(**values)


def test_records_read_back_exactly_newest_first(store: Any) -> None:
    runs = [record("s", n) for n in (1, 2, 3)]
    store.add_messages("s", [{"role": "user", "content": "a"}], run=runs[0])
    store.add_messages("s", [], run=runs[1])  # a record alone
    store.add_messages("s", ({"role": "user", "content": c} for c in "bc"), run=runs[2])

    assert store.runs("s") == runs[::-1]
    assert store.runs("s", limit=2) == runs[:0:-1]
    assert store.message_count("s") == 3
    assert store.usage("s") == SessionUsage(
        runs=3,
        requests=6,
        input_tokens=600,
        output_tokens=60,
        total_tokens=660,
        cached_input_tokens=6,
        reasoning_tokens=12,
        first_run_at=runs[0].started_at,
        last_run_at=runs[2].ended_at,
    )
    assert store.usage("unknown") == SessionUsage()
    assert store.runs("unknown") == []


def test_a_record_alone_does_not_create_the_session(store: Any) -> None:
    store.add_messages("ghost", [], run=record("ghost", 1, items_added=0, outcome="failed"))
    assert store.session_info("ghost") is None
    assert [info.session_id for info in store.list_sessions()] == []
    assert store.usage("ghost").runs == 1


def test_usage_by_session_ranks_by_total_tokens(store: Any) -> None:
    store.add_messages("small", [], run=record("small", 1))
    store.add_messages("big", [], run=record("big", 3))
    store.add_messages("mid", [], run=record("mid", 1))
    store.add_messages("mid", [], run=record("mid", 2))
    ranked = store.usage_by_session()
    assert [(sid, usage.total_tokens) for sid, usage in ranked] == [
        ("big", 330),
        ("mid", 330),
        ("small", 110),
    ]
    assert [sid for sid, _ in store.usage_by_session(limit=1)] == ["big"]


def test_clear_and_prune_remove_records_and_fork_does_not_copy_them(store: Any) -> None:
    for sid in ("a", "b"):
        store.add_messages(sid, [{"role": "user", "content": sid}], run=record(sid, 1))
    store.fork("a", "copy")
    assert store.usage("copy").runs == 0
    store.clear_session("a")
    assert store.usage("a").runs == 0
    assert store.usage("b").runs == 1
    store.prune(keep_last=0)  # trimming keeps the ledger
    assert store.usage("b").runs == 1
    store.add_messages("b", [{"role": "user", "content": "again"}])
    store.prune(older_than=timedelta(0))
    assert store.usage("b").runs == 0
    assert store.usage_by_session() == []


def test_bad_records_are_refused_and_nothing_is_stored(store: Any) -> None:
    message = [{"role": "user", "content": "hi"}]
    cases: list[tuple[Any, type[Exception], str]] = [
        ({"run_id": "x"}, TypeError, "run must be a RunRecord"),
        (record("other", 1), ValueError, "belongs to session 'other', not 's'"),
        (record("s", 1, requests=-1), ValueError, r"run.requests must be 0 or more"),
        (record("s", 1, input_tokens=1.5), TypeError, r"run.input_tokens must be an int"),
        (record("s", 1, outcome="done"), ValueError, r"run.outcome must be one of"),
        (record("s", 1, ended_at=datetime(2026, 1, 1)), ValueError, "timezone-aware"),
        (record("s", 1, agent="\ud800"), ValueError, "run.agent"),
        (record("s", 1, run_id=""), ValueError, "run_id must not be empty"),
    ]
    for run, kind, words in cases:
        with pytest.raises(kind, match=words):
            store.add_messages("s", message, run=run)
    with pytest.raises(TypeError):
        store.add_messages("s", [object()], run=record("s", 1))
    assert store.message_count("s") == 0
    assert store.usage("s") == SessionUsage()
    with pytest.raises(ValueError, match="limit must be at least 1"):
        store.runs("s", limit=0)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        store.usage_by_session(limit=0)


def test_export_and_import_carry_the_ledger(
    store: Any, store_factory: Any, store_kind: str
) -> None:
    runs = [record("s", n) for n in (1, 2)]
    store.add_messages("s", [{"role": "user", "content": "a"}], run=runs[0])
    store.add_messages("s", [{"role": "user", "content": "b"}], run=runs[1])
    store.add_messages("quiet", [{"role": "user", "content": "c"}])
    out = io.StringIO()
    assert store.export_jsonl(out) == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["type"] for line in lines] == ["session", "message", "message", "run", "run"] + [
        "session",
        "message",
        "end",  # the trailer
    ]
    assert [line.get("run_id") for line in lines[3:5]] == ["run-1", "run-2"]  # oldest first

    target = store_factory(store_kind)
    target.add_messages("s", [], run=record("s", 9))  # replaced by the file's ledger
    assert target.import_jsonl(out.getvalue().splitlines(keepends=True)) == 2
    assert target.runs("s") == runs[::-1]
    assert target.usage("s") == store.usage("s")
    assert target.usage("quiet") == SessionUsage()

    bad = out.getvalue().replace('"outcome":"completed"', '"outcome":"won"', 1)
    with pytest.raises(ValueError, match=r"line 4: bad run record for session 's'"):
        target.import_jsonl(io.StringIO(bad), on_conflict="replace")
    assert target.runs("s") == runs[::-1]  # the failing session was not touched


def test_export_and_import_carry_the_runs_of_a_session_with_no_record(
    store: Any, store_factory: Any, store_kind: str
) -> None:
    # A run rolled back on a new session records what it spent, but creates no session.
    store.add_messages("s", [{"role": "user", "content": "a"}], run=record("s", 1))
    ghost = [record("ghost", n) for n in (2, 3)]
    for run in ghost:
        store.add_messages("ghost", [], run=run)
    assert store.session_info("ghost") is None
    out = io.StringIO()
    assert store.export_jsonl(out) == 1  # sessions written
    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    kinds = ["session", "message", "run", "runs", "run", "run", "end"]
    assert [line["type"] for line in lines] == kinds
    assert lines[3] == {"type": "runs", "session_id": "ghost"}

    target = store_factory(store_kind)
    assert target.import_jsonl(io.StringIO(text)) == 1
    assert target.runs("ghost") == ghost[::-1]
    assert target.usage("ghost") == store.usage("ghost")
    assert target.session_info("ghost") is None  # still no session
    assert target.import_jsonl(io.StringIO(text), on_conflict="skip") == 0
    assert target.runs("ghost") == ghost[::-1]  # a second import adds nothing more

    named = io.StringIO()
    store.export_jsonl(named, session_ids=["s"])  # only what was named
    assert [json.loads(line)["type"] for line in named.getvalue().splitlines()] == [
        "session",
        "message",
        "run",
        "end",
    ]
    bad = text.replace('{"type":"runs","session_id":"ghost"}\n', "", 1)
    with pytest.raises(ValueError, match="bad run record for session 's'"):
        store_factory(store_kind).import_jsonl(io.StringIO(bad))
    message = '{"type":"message","seq":1,"created_at":1.5,"message":{"role":"user"}}\n'
    bad = text.replace('"session_id":"ghost"}\n', '"session_id":"ghost"}\n' + message, 1)
    with pytest.raises(ValueError, match="line 5: a message line among the run records"):
        store_factory(store_kind).import_jsonl(io.StringIO(bad))


def test_write_and_unlock_records_the_run_and_gives_the_lease_back(store: Any) -> None:
    assert store.try_lock("s", "run-1", 30.0)
    store.write_and_unlock("s", "run-1", [{"role": "user", "content": "hi"}], run=record("s", 1))
    assert store.runs("s") == [record("s", 1)]
    assert store.message_count("s") == 1
    assert store.try_lock("s", "run-2", 30.0)  # given back
    store.write_and_unlock("s", "run-2", [], run=record("s", 2, items_added=0))  # alone
    assert [run.run_id for run in store.runs("s")] == ["run-2", "run-1"]
    assert store.message_count("s") == 1
    assert store.try_lock("s", "run-3", 30.0)
    with pytest.raises(ValueError, match="belongs to session 'other'"):
        store.write_and_unlock(
            "s", "run-3", [{"role": "user", "content": "x"}], run=record("other", 3)
        )
    assert store.try_lock("s", "run-4", 30.0)  # a refused record gives the lease back too
    assert store.message_count("s") == 1
    assert store.usage("s").runs == 2
