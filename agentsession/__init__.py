"""agentsession: automatic session memory for the OpenAI Agents SDK.

Every run with a ``session_id`` sees the conversation so far, and what it adds is stored
for the next one::

    from agentsession import Agent, Runner, RunConfig, SQLiteSessionMemory

    memory = SQLiteSessionMemory("conversations.db")
    config = RunConfig(memory=memory, session_id="user_123")
    result = Runner.run_sync(Agent(name="Assistant"), "Hello", run_config=config)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agents import Agent, function_tool, handoff

from .encryption import Encryption, generate_key
from .exceptions import (
    AgentSessionError,
    DecryptionError,
    MissingDependencyError,
    NotSupportedError,
    SchemaError,
    SessionBudgetExceeded,
    SessionBusy,
    StoreBusy,
    StoreClosed,
    StoreError,
)
from .memory import PostgresSessionMemory, RedisSessionMemory, SQLiteSessionMemory, StoreMemory
from .protocol import (
    RunRecord,
    SearchHit,
    SessionInfo,
    SessionMemory,
    SessionPage,
    SessionUsage,
    Store,
)
from .runner import RunConfig, Runner
from .session import MemorySession
from .stores.sqlite import SQLiteKeyFile, SQLiteStore
from .window import HistoryWindow

if TYPE_CHECKING:
    from .stores.postgres import PostgresKeyTable, PostgresStore
    from .stores.redis import RedisKeyHash, RedisStore

__version__ = "0.1.0"

__all__ = (
    "Agent",
    "AgentSessionError",
    "DecryptionError",
    "Encryption",
    "HistoryWindow",
    "MemorySession",
    "MissingDependencyError",
    "NotSupportedError",
    "PostgresKeyTable",
    "PostgresSessionMemory",
    "PostgresStore",
    "RedisKeyHash",
    "RedisSessionMemory",
    "RedisStore",
    "RunConfig",
    "RunRecord",
    "Runner",
    "SQLiteKeyFile",
    "SQLiteSessionMemory",
    "SQLiteStore",
    "SchemaError",
    "SearchHit",
    "SessionBudgetExceeded",
    "SessionBusy",
    "SessionInfo",
    "SessionMemory",
    "SessionPage",
    "SessionUsage",
    "Store",
    "StoreBusy",
    "StoreClosed",
    "StoreError",
    "StoreMemory",
    "__version__",
    "function_tool",
    "generate_key",
    "handoff",
)


def __getattr__(name: str) -> Any:
    # The PostgreSQL and Redis stores import their drivers, which are extras: load them
    # on first use, so that ``import agentsession`` works without them.
    if name in ("PostgresStore", "RedisStore"):
        from . import stores

        return getattr(stores, name)
    if name == "PostgresKeyTable":
        from .stores.postgres import PostgresKeyTable

        return PostgresKeyTable
    if name == "RedisKeyHash":
        from .stores.redis import RedisKeyHash

        return RedisKeyHash
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
