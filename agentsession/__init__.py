"""agentsession: automatic session memory for the OpenAI Agents SDK.

Every run with a ``session_id`` sees the conversation so far, and what it adds is stored
for the next one::

    from agentsession import Agent, Runner, RunConfig, SQLiteSessionMemory

    memory = SQLiteSessionMemory("conversations.db")
    config = RunConfig(memory=memory, session_id="user_123")
    result = Runner.run_sync(Agent(name="Assistant"), "Hello", run_config=config)
"""

from __future__ import annotations

from agents import Agent, function_tool, handoff

from .exceptions import (
    AgentSessionError,
    MissingDependencyError,
    SchemaError,
    SessionBusy,
    StoreBusy,
    StoreClosed,
    StoreError,
)
from .memory import SQLiteSessionMemory, StoreMemory
from .protocol import SearchHit, SessionInfo, SessionMemory, SessionPage, Store
from .runner import RunConfig, Runner
from .session import MemorySession
from .stores.sqlite import SQLiteStore
from .window import HistoryWindow

__version__ = "0.1.0"

__all__ = (
    "Agent",
    "AgentSessionError",
    "HistoryWindow",
    "MemorySession",
    "MissingDependencyError",
    "RunConfig",
    "Runner",
    "SQLiteSessionMemory",
    "SQLiteStore",
    "SchemaError",
    "SearchHit",
    "SessionBusy",
    "SessionInfo",
    "SessionMemory",
    "SessionPage",
    "Store",
    "StoreBusy",
    "StoreClosed",
    "StoreError",
    "StoreMemory",
    "__version__",
    "function_tool",
    "handoff",
)
