"""Handles for the Agents SDK's own sessions, used exactly as a user would.

The SDK binds one ``Session`` object to one session id, so a handle keeps one object per
session id, created on first use and closed with the handle. Tables are created once by
the SDK itself (its constructor, or ``create_tables=True`` on a first session); later
objects are created the way the SDK recommends for production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._systems import db_path

__all__ = (
    "AsyncSQLiteHandle",
    "SQLAlchemyHandle",
    "SQLAlchemySessions",
    "SQLiteHandle",
)

Item = dict[str, Any]


class _PerSession:
    """A dict of SDK session objects, one per session id."""

    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}

    def make(self, session_id: str) -> Any:
        raise NotImplementedError

    def _session(self, session_id: str) -> Any:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = self.make(session_id)
        return session

    async def get(self, session_id: str, limit: int | None) -> list[Item]:
        return await self._session(session_id).get_items(limit)  # type: ignore[no-any-return]

    async def add(self, session_id: str, items: list[Item]) -> None:
        await self._session(session_id).add_items(items)


class SQLiteHandle(_PerSession):
    """``agents.SQLiteSession`` on a file (its thread-local connections, its file lock)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.path = db_path(directory, "sdk")
        self._session("__schema__")  # the constructor creates the tables

    def make(self, session_id: str) -> Any:
        from agents import SQLiteSession

        return SQLiteSession(session_id, self.path)

    def connections(self) -> int:
        return sum(len(session._connections) for session in self.sessions.values())

    async def aclose(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()


class AsyncSQLiteHandle(_PerSession):
    """``agents.extensions.memory.AsyncSQLiteSession``: one aiosqlite connection each."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.path = db_path(directory, "sdk")

    def make(self, session_id: str) -> Any:
        from agents.extensions.memory import AsyncSQLiteSession

        return AsyncSQLiteSession(session_id, self.path)

    def connections(self) -> int:
        return sum(session._connection is not None for session in self.sessions.values())

    async def aclose(self) -> None:
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()


class SQLAlchemySessions(_PerSession):
    """``SQLAlchemySession``s sharing one async engine (and its pool); the tables are
    created by the first call, once."""

    def __init__(self, engine: Any) -> None:
        super().__init__()
        self.engine = engine
        self._ready = False

    def make(self, session_id: str) -> Any:
        from agents.extensions.memory import SQLAlchemySession

        return SQLAlchemySession(session_id, engine=self.engine, create_tables=not self._ready)

    async def _setup(self) -> None:
        if not self._ready:
            await self.make("__schema__").get_items(1)  # create_tables=True, once
            self._ready = True

    async def get(self, session_id: str, limit: int | None) -> list[Item]:
        await self._setup()
        return await super().get(session_id, limit)

    async def add(self, session_id: str, items: list[Item]) -> None:
        await self._setup()
        await super().add(session_id, items)

    async def aclose(self) -> None:
        self.sessions.clear()
        await self.engine.dispose()


class SQLAlchemyHandle(SQLAlchemySessions):
    """``SQLAlchemySession`` over ``sqlite+aiosqlite``, one engine (and pool) per handle."""

    def __init__(self, directory: Path) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.path = db_path(directory, "sqlalchemy")
        super().__init__(create_async_engine(f"sqlite+aiosqlite:///{self.path}"))

    def connections(self) -> int:
        return int(self.engine.sync_engine.pool.checkedin()) + int(
            self.engine.sync_engine.pool.checkedout()
        )
