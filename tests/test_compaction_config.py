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
