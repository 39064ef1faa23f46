"""``RunConfig(compaction=...)`` and ``Compaction``: caller mistakes are refused up front."""

from __future__ import annotations

import pytest

from agentsession import Compaction, RunConfig, SQLiteSessionMemory
from tests.conftest import DictMemory


def test_compaction_checks_its_limits() -> None:
    with pytest.raises(ValueError, match="max_tokens must be at least 1, got 0"):
        Compaction(max_tokens=0)
    with pytest.raises(TypeError, match="keep_turns must be an int, got '2'"):
        Compaction(max_tokens=10, keep_turns="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="instructions must be a str or None"):
        Compaction(max_tokens=10, instructions=3)  # type: ignore[arg-type]


def test_run_config_refuses_what_cannot_compact() -> None:
    with pytest.raises(TypeError, match="compaction must be a Compaction"):
        RunConfig(memory=DictMemory(), session_id="s", compaction=100)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DictMemory cannot compact"):
        RunConfig(memory=DictMemory(), session_id="s", compaction=Compaction(max_tokens=10))
    with SQLiteSessionMemory(":memory:") as memory:
        with pytest.raises(ValueError, match='session_lock="off"'):
            RunConfig(
                memory=memory,
                session_id="s",
                session_lock="off",
                compaction=Compaction(max_tokens=10),
            )
        RunConfig(memory=memory, session_id="s", compaction=Compaction(max_tokens=10))


@pytest.mark.parametrize("tracing_disabled", [False, True])
def test_automatic_compaction_traces_its_summary_as_the_run_says(
    tmp_path: object, tracing_disabled: bool
) -> None:
    """A run with tracing_disabled=True sends no trace, its compaction's summary run
    included; with tracing on, the summary run is traced too."""
    import agents
    from agents.tracing import TracingProcessor, set_trace_processors

    from agentsession import Runner
    from agentsession.cli.offline import OfflineModel

    started: list[str] = []

    class Collect(TracingProcessor):
        def on_trace_start(self, trace: object) -> None:
            started.append(str(getattr(trace, "name", "")))

        def on_trace_end(self, trace: object) -> None: ...
        def on_span_start(self, span: object) -> None: ...
        def on_span_end(self, span: object) -> None: ...
        def shutdown(self) -> None: ...
        def force_flush(self) -> None: ...

    memory = SQLiteSessionMemory()
    memory.store.add_messages(
        "s", [m for n in range(4) for m in ({"role": "user", "content": "q" * 300},
                                             {"role": "assistant", "content": f"a{n}"})]
    )  # fmt: skip
    config = RunConfig(
        memory=memory,
        session_id="s",
        tracing_disabled=tracing_disabled,
        compaction=Compaction(max_tokens=10, keep_turns=1, model=OfflineModel()),
    )
    agents.set_tracing_disabled(False)
    set_trace_processors([Collect()])
    try:
        Runner.run_sync(agents.Agent(name="Helper", model=OfflineModel()), "hi", run_config=config)
        compacted = len(memory.store.compactions("s"))
    finally:
        set_trace_processors([])
        agents.set_tracing_disabled(True)
        memory.close()
    assert compacted == 1
    assert len(started) == (0 if tracing_disabled else 2), started
