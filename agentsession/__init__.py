"""agentsession: automatic session memory for the OpenAI Agents SDK.

Every run with a ``session_id`` sees the conversation so far, and what it adds is stored
for the next one::

    from agentsession import Agent, Runner, RunConfig, SQLiteSessionMemory

    memory = SQLiteSessionMemory("conversations.db")
    config = RunConfig(memory=memory, session_id="user_123")
    result = Runner.run_sync(Agent(name="Assistant"), "Hello", run_config=config)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .compaction import Compaction
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
from .protocol import (
    CompactionRecord,
    LeaseHolder,
    RunRecord,
    SearchHit,
    SessionInfo,
    SessionMemory,
    SessionPage,
    SessionUsage,
    Store,
)
from .stores.sqlite import SQLiteKeyFile, SQLiteStore
from .window import HistoryWindow

if TYPE_CHECKING:
    from agents import Agent, function_tool, handoff

    from .memory import (
        PostgresSessionMemory,
        RedisSessionMemory,
        SQLiteSessionMemory,
        StoreMemory,
    )
    from .runner import RunConfig, Runner
    from .session import MemorySession
    from .stores.postgres import PostgresKeyTable, PostgresStore
    from .stores.redis import RedisKeyHash, RedisStore

__version__ = "0.1.0"

__all__ = (
    "Agent",
    "AgentSessionError",
    "Compaction",
    "CompactionRecord",
    "DecryptionError",
    "Encryption",
    "HistoryWindow",
    "LeaseHolder",
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


#: Names loaded on first use, and the module each comes from. The Agents SDK takes over a
#: second to import, so only what needs it (the runner, the memories, the SDK's own names)
#: loads it: the stores and the command line's non-model commands start without it. The
#: PostgreSQL and Redis stores import their drivers, which are extras.
_LAZY = {
    "Agent": "agents",
    "function_tool": "agents",
    "handoff": "agents",
    "MemorySession": ".session",
    "PostgresSessionMemory": ".memory",
    "RedisSessionMemory": ".memory",
    "SQLiteSessionMemory": ".memory",
    "StoreMemory": ".memory",
    "RunConfig": ".runner",
    "Runner": ".runner",
    "PostgresStore": ".stores",
    "RedisStore": ".stores",
    "PostgresKeyTable": ".stores.postgres",
    "RedisKeyHash": ".stores.redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    if not module.startswith(".stores"):  # a driver may be taken away (tests do): look again
        globals()[name] = value  # the next lookup finds it without calling this
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
