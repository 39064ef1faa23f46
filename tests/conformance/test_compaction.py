"""Compaction on every engine: the oldest turns summarised, the originals archived, and
``uncompact`` putting back exactly what was there.

The summaries come from the offline model (deterministic, no network) or, where the usage
ledger is checked, from the loopback Responses server through the real ``openai`` client.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from agentsession import Agent, Compaction, RunConfig, Runner, StoreMemory
from agentsession.cli.offline import OfflineModel
from agentsession.compaction import SUMMARY_PREFIX, is_summary
from agentsession.window import approximate_tokens
from tests.conftest import RUNNER_METHODS, run_with

pytestmark = pytest.mark.anyio


@pytest.fixture
def memory(store: Any) -> Iterator[StoreMemory]:
    memory = StoreMemory(store)
    yield memory
    memory.close()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "id": f"msg_{abs(hash(text)) % 10**8}",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "lookup", "arguments": "{}"}


def output(call_id: str, text: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def history(turns: int) -> list[dict[str, Any]]:
    """``turns`` turns, each a question, a tool exchange and an answer; odd characters in
    the text so that "exactly" means exactly (escapes, non-ASCII, key order)."""
    items: list[dict[str, Any]] = []
    for n in range(turns):
        items += [
            user(f"question {n}: caf\u00e9 \u2603 \"quoted\" \\ {{'a': 1}}"),
            call(f"call_{n}"),
            output(f"call_{n}", f"result {n} \U0001f600"),
            {"role": "assistant", "content": f"answer {n}", "zeta": 1, "alpha": [2, {"b": 3}]},
        ]
    return items


def exported(store: Any, session_id: str) -> list[dict[str, Any]]:
    """The session's message lines, as ``export_jsonl`` writes them (stored text, times)."""
    buffer = io.StringIO()
    store.export_jsonl(buffer, session_ids=[session_id])
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    return [line for line in lines if line["type"] == "message"]


async def test_compact_then_uncompact_round_trips_exactly(memory: StoreMemory) -> None:
    store = memory.store
    original = history(5)
    store.add_messages("s", original[:8])
    store.add_messages("s", original[8:])
    before = exported(store, "s")

    record = await memory.compact("s", model=OfflineModel(), keep_turns=2)

    after = store.get_messages("s")
    assert is_summary(after[0]) and after[0]["role"] != "user"
    assert after[1:] == original[12:]  # the two newest turns, as they were
    assert (record.compacted_items, record.kept_items) == (12, 8)
    assert record.summary.startswith("Offline summary of 12 items")
    assert after[0]["content"] == SUMMARY_PREFIX + record.summary
    assert record.tokens_after < record.tokens_before
    assert record.model == "offline"
    assert store.message_count("s") == 9
    assert store.get_messages("s", include_archived=True) == original
    assert store.compactions("s") == [record]

    assert await memory.uncompact("s") == record
    assert store.get_messages("s") == original
    assert exported(store, "s") == before  # the same stored text and times, byte for byte
    assert store.compactions("s") == []
    assert await memory.uncompact("s") is None


async def test_repeated_compactions_undo_newest_first(memory: StoreMemory) -> None:
    store = memory.store
    original = history(4)
    store.add_messages("s", original)
    first = await memory.compact("s", model=OfflineModel(), keep_turns=2)
    store.add_messages("s", [user("later"), reply("later answer")])
    second = await memory.compact("s", model=OfflineModel(), keep_turns=1)
    whole = [*original, user("later"), reply("later answer")]

    assert store.get_messages("s") == [store.get_messages("s")[0], *whole[-2:]]
    assert store.compactions("s") == [first, second]
    assert store.get_messages("s", include_archived=True) == whole
    assert store.get_messages("s", 2, include_archived=True) == whole[-2:]

    assert store.uncompact("s") == second
    assert store.get_messages("s")[1:] == whole[8:]
    assert store.uncompact("s") == first
    assert store.get_messages("s") == whole


async def test_a_tool_exchange_is_never_split(memory: StoreMemory) -> None:
    store = memory.store
    # A call answered only after the next user message: cutting at that user message
    # would leave the output without its call.
    items = [
        user("q0"),
        reply("a0"),
        user("q1"),
        call("late"),
        user("q2"),
        output("late", "done"),
        reply("a2"),
        user("q3"),
        reply("a3"),
    ]
    store.add_messages("s", items)
    assert store.compaction_candidates("s", 2) == items[:3]
    with pytest.raises(ValueError, match="split a tool exchange"):
        store.compact_with("s", "bad cut", items=4)
    assert store.get_messages("s") == items  # nothing changed

    await memory.compact("s", model=OfflineModel(), keep_turns=2)
    kept = store.get_messages("s")[1:]
    assert kept == items[3:]
    assert store.get_messages("s", include_archived=True) == items


async def test_nothing_to_compact_and_bad_arguments_change_nothing(memory: StoreMemory) -> None:
    store = memory.store
    store.add_messages("s", history(2))
    with pytest.raises(ValueError, match="nothing to compact"):
        await memory.compact("s", model=OfflineModel(), keep_turns=2)
    with pytest.raises(ValueError, match="keep_turns must be at least 1"):
        await memory.compact("s", model=OfflineModel(), keep_turns=0)
    with pytest.raises(TypeError, match="model must be"):
        await memory.compact("s", model=42)
    with pytest.raises(ValueError, match="leave at least one message"):
        store.compact_with("s", "all of it", items=8)
    assert store.get_messages("s") == history(2)
    assert store.compactions("s") == []


async def test_clear_removes_the_archive(memory: StoreMemory) -> None:
    store = memory.store
    store.add_messages("s", history(3))
    await memory.compact("s", model=OfflineModel(), keep_turns=1)
    store.clear_session("s")
    assert store.compactions("s") == []
    assert store.get_messages("s", include_archived=True) == []
    store.add_messages("s", [user("fresh")])
    assert store.uncompact("s") is None
    assert store.get_messages("s") == [user("fresh")]


async def test_fork_copies_the_visible_history(memory: StoreMemory) -> None:
    store = memory.store
    store.add_messages("s", history(3))
    await memory.compact("s", model=OfflineModel(), keep_turns=1)
    visible = store.get_messages("s")
    assert store.fork("s", "copy") == len(visible)
    assert store.get_messages("copy") == visible
    assert store.compactions("copy") == []
    assert store.get_messages("copy", include_archived=True) == visible


async def test_the_next_run_sees_the_summary_and_the_kept_turns_only(
    model_server: Any, memory: StoreMemory
) -> None:
    config = RunConfig(memory=memory, session_id="chat")
    agent = Agent(name="Helper", model="gpt-test")
    for n in range(3):
        await Runner.run(agent, f"old question number {n}", run_config=config)
    record = await memory.compact("chat", model=OfflineModel(), keep_turns=1)

    await Runner.run(agent, "new question", run_config=config)
    sent = model_server.new_requests()[-1]["input"]
    assert sent[0]["role"] == "system"
    assert sent[0]["content"] == SUMMARY_PREFIX + record.summary
    rest = json.dumps(sent[1:])
    assert "old question number 2" in rest  # the kept turn
    assert "old question number 0" not in rest and "old question number 1" not in rest
    assert [item.get("role") for item in sent[1:]] == ["user", "assistant", "user"]


async def test_the_summary_call_is_in_the_usage_ledger(
    model_server: Any, memory: StoreMemory
) -> None:
    start = len(model_server.usages)
    model_server.usage = lambda n: {
        "input_tokens": 300 + n,
        "output_tokens": 40,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
    try:
        memory.store.add_messages("s", history(3))
        record = await memory.compact("s", model="gpt-summary", keep_turns=1)
    finally:
        model_server.usage = None
    (reported,) = model_server.usages[start:]
    (run,) = await memory.runs("s")
    assert run.agent == "agentsession compaction"
    assert (run.model, record.model) == ("gpt-summary", "gpt-summary")
    assert (run.requests, run.input_tokens, run.output_tokens) == (
        1,
        reported["input_tokens"],
        reported["output_tokens"],
    )
    assert (run.items_added, run.outcome) == (0, "completed")
    request = model_server.new_requests()[-1]
    assert "question 0" in json.dumps(request["input"])  # the archived turns were sent


def long_turns(memory: StoreMemory, turns: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for n in range(turns):
        items += [user(f"old question number {n} " + "x" * 200), reply(f"old answer {n}")]
    memory.store.add_messages("auto", items)
    return items


@pytest.mark.parametrize("method", RUNNER_METHODS)
async def test_automatic_compaction_above_the_budget(
    model_server: Any, memory: StoreMemory, method: str
) -> None:
    items = long_turns(memory, 4)
    budget = sum(map(approximate_tokens, items)) - 1  # the history is just over it
    config = RunConfig(
        memory=memory,
        session_id="auto",
        compaction=Compaction(max_tokens=budget, keep_turns=1, model=OfflineModel()),
    )
    await run_with(method, Agent(name="Helper", model="gpt-test"), "new question", config)

    sent = model_server.new_requests()[-1]["input"]
    assert sent[0]["content"].startswith(SUMMARY_PREFIX + "Offline summary of 6 items")
    rest = json.dumps(sent[1:])
    assert "old question number 3" in rest and "new question" in rest
    assert "old question number 0" not in rest
    (record,) = memory.store.compactions("auto")
    assert (record.compacted_items, record.kept_items) == (6, 2)
    stored = memory.store.get_messages("auto", include_archived=True)
    assert stored[: len(items)] == items  # nothing lost, the run's turn after it


async def test_no_automatic_compaction_at_or_below_the_budget(
    model_server: Any, memory: StoreMemory
) -> None:
    items = long_turns(memory, 4)
    budget = sum(map(approximate_tokens, items))  # exactly the history: not over
    config = RunConfig(
        memory=memory,
        session_id="auto",
        compaction=Compaction(max_tokens=budget, keep_turns=1, model=OfflineModel()),
    )
    await Runner.run(Agent(name="Helper", model="gpt-test"), "new question", run_config=config)
    assert memory.store.compactions("auto") == []
    assert model_server.new_requests()[-1]["input"][: len(items)] == json.loads(json.dumps(items))


async def test_export_and_import_carry_the_archive(memory: StoreMemory) -> None:
    store = memory.store
    original = history(4)
    store.add_messages("s", original)
    await memory.compact("s", model=OfflineModel(), keep_turns=2)
    store.add_messages("s", [user("later"), reply("later answer")])
    await memory.compact("s", model=OfflineModel(), keep_turns=1)
    records = store.compactions("s")
    visible = store.get_messages("s")
    buffer = io.StringIO()
    store.export_jsonl(buffer, session_ids=["s"])
    text = buffer.getvalue()
    assert [json.loads(line)["type"] for line in text.splitlines()].count("compaction") == 2

    store.clear_session("s")
    assert store.import_jsonl(io.StringIO(text)) == 1
    assert store.get_messages("s") == visible
    assert store.compactions("s") == records
    again = io.StringIO()
    store.export_jsonl(again, session_ids=["s"])
    assert again.getvalue() == text  # the same stored text, times and records
    assert store.uncompact("s") == records[1]
    assert store.uncompact("s") == records[0]
    assert store.get_messages("s") == [*original, user("later"), reply("later answer")]


async def test_a_bad_compaction_line_imports_nothing_of_its_session(memory: StoreMemory) -> None:
    store = memory.store
    store.add_messages("s", history(3))
    await memory.compact("s", model=OfflineModel(), keep_turns=1)
    buffer = io.StringIO()
    store.export_jsonl(buffer, session_ids=["s"])
    lines = buffer.getvalue().splitlines()
    at = next(n for n, line in enumerate(lines) if '"type":"compaction"' in line)
    broken = json.loads(lines[at])
    del broken["record"]["kept_items"]
    lines[at] = json.dumps(broken)
    store.clear_session("s")
    with pytest.raises(ValueError, match=f"line {at + 1}: compaction record: .*kept_items"):
        store.import_jsonl(io.StringIO("\n".join(lines) + "\n"))
    assert store.get_messages("s") == [] and store.compactions("s") == []


async def test_prune_removes_the_archive_with_the_session(memory: StoreMemory) -> None:
    store = memory.store
    store.add_messages("old", history(3))
    await memory.compact("old", model=OfflineModel(), keep_turns=1)
    store.add_messages("new", history(1))
    assert store.prune(older_than=datetime.now(timezone.utc) + timedelta(hours=1)) > 0
    assert store.compactions("old") == []
    assert store.get_messages("old", include_archived=True) == []
    store.add_messages("old", [user("fresh")])  # a new session of the same id
    assert store.uncompact("old") is None
    assert store.get_messages("old", include_archived=True) == [user("fresh")]


async def test_compact_waits_for_a_run_holding_the_session(memory: StoreMemory) -> None:
    from agentsession import SessionBusy

    store = memory.store
    store.add_messages("s", history(3))
    assert store.try_lock("s", "a-run", 30)
    store.lock_timeout = 0
    with pytest.raises(SessionBusy, match="'s' is in use by a run"):
        await memory.compact("s", model=OfflineModel(), keep_turns=1)
    with pytest.raises(SessionBusy):
        store.uncompact("s")
    store.unlock("s", "a-run")
    assert store.get_messages("s") == history(3) and store.runs("s") == []
    await memory.compact("s", model=OfflineModel(), keep_turns=1)  # the lease was given back
    assert store.try_lock("s", "a-run", 30)  # and the compaction's own too


async def test_an_agent_writes_the_summary_with_the_instructions_given(
    model_server: Any, memory: StoreMemory
) -> None:
    memory.store.add_messages("s", history(3))
    agent = Agent(name="Summariser", instructions="its own", model="gpt-agent")
    record = await memory.compact("s", model=agent, keep_turns=1, instructions="Be brief.")
    request = model_server.new_requests()[-1]
    assert (request["model"], request["instructions"]) == ("gpt-agent", "Be brief.")
    assert record.summary.startswith("echo: Summarise this conversation of 8 items")
    (run,) = await memory.runs("s")
    assert (run.agent, run.model) == ("Summariser", "gpt-agent")

    memory.store.uncompact("s")
    await memory.compact("s", model=agent, keep_turns=1)  # its own instructions
    assert model_server.new_requests()[-1]["instructions"] == "its own"


class GatedModel(OfflineModel):
    """The offline model, answering only once ``gate`` is set; ``asked`` is set on a call."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.gate = asyncio.Event()

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        self.asked.set()
        await self.gate.wait()
        return await super().get_response(*args, **kwargs)


async def test_automatic_compaction_holds_the_session_lease(
    model_server: Any, memory: StoreMemory
) -> None:
    items = long_turns(memory, 3)
    summariser = GatedModel()
    config = RunConfig(
        memory=memory,
        session_id="auto",
        compaction=Compaction(max_tokens=10, keep_turns=1, model=summariser),
    )
    agent = Agent(name="Helper", model="gpt-test")
    run = asyncio.ensure_future(Runner.run(agent, "new question", run_config=config))
    await asyncio.wait_for(summariser.asked.wait(), 10)
    # While the summary is being written, the session is the run's: no other run, edit
    # or compaction gets it.
    assert not memory.store.try_lock("auto", "another-run", 5)
    assert memory.store.get_messages("auto") == items  # nothing changed yet
    summariser.gate.set()
    await asyncio.wait_for(run, 10)
    assert len(memory.store.compactions("auto")) == 1
    assert memory.store.try_lock("auto", "another-run", 5)  # given back after the run


async def test_full_reads_after_compaction_see_it(memory: StoreMemory) -> None:
    # Long enough for the SQLite history cache (sessions of 64 rows or more) to keep the
    # session after the first full read: the compaction must not be read past.
    store = memory.store
    original = history(20)  # 80 items
    store.add_messages("s", original)
    assert store.get_messages("s") == original
    await memory.compact("s", model=OfflineModel(), keep_turns=2)
    assert store.get_messages("s")[1:] == original[-8:]
    store.add_messages("s", [user("after")])
    assert store.get_messages("s")[1:] == [*original[-8:], user("after")]
    store.uncompact("s")
    for _ in range(2):  # the SQLite cache keeps a long session from its second read on
        assert store.get_messages("s") == [*original, user("after")]
    # One item for one summary: the session keeps its length, and still reads changed.
    store.compact_with("s", "just the first question", items=1)
    assert store.get_messages("s")[0]["content"].endswith("just the first question")
    assert store.get_messages("s")[1:] == [*original[1:], user("after")]
