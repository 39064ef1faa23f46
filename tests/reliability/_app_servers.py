"""App-server processes for the scale-out tests: real runs against one shared server.

Each child process plays one app server of a deployment: it opens its own memory on the
shared PostgreSQL database or Redis server and runs whole turns through the runner, from
threads with ``Runner.run_sync`` (a Flask or Django worker) or from asyncio tasks with
``Runner.run`` (a FastAPI worker). A turn is a user message, a tool call, its output and
the reply, so four items that must stay together in the session.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import agents
from agents.testing import ScriptedModel, assistant_message, function_call

from agentsession import Agent, RunConfig, Runner, StoreMemory, function_tool

from ._workers import _reporting

#: Sessions every app server writes to (besides each writer's own).
SHARED_SESSIONS = 2


@function_tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def own_session(proc: int, writer: int) -> str:
    return f"own-p{proc}-w{writer}"


def shared_session(proc: int, writer: int) -> str:
    return f"shared-{(proc + writer) % SHARED_SESSIONS}"


def turn_id(proc: int, writer: int, turn: int, session: str) -> str:
    return f"p{proc}-w{writer}-t{turn}@{session}"


def turn_of(item: dict[str, Any]) -> str:
    """Which turn a stored item belongs to (every item of a turn names it)."""
    if item.get("role") == "user":
        return str(item["content"])
    if item.get("type") in ("function_call", "function_call_output"):
        return str(item["call_id"]).removeprefix("call-")
    return str(item["content"][0]["text"]).removeprefix("reply ")


def _agent(turn: str) -> tuple[Agent[Any], ScriptedModel]:
    model = ScriptedModel(
        [
            [function_call("lookup", {"key": turn}, call_id=f"call-{turn}")],
            [assistant_message(f"reply {turn}")],
        ]
    )
    return Agent(name="A", model=model, tools=[lookup]), model


def _check_seen(model: ScriptedModel, turn: str) -> None:
    """The model was sent the history then this turn's input, whole turns only."""
    sent = model.first_call.input if model.first_call is not None else None
    if not isinstance(sent, list) or sent[-1].get("content") != turn:
        raise AssertionError(f"turn {turn} was not sent its own input last: {sent!r}")
    earlier = [turn_of(item) for item in sent[:-1]]
    for start in range(0, len(earlier), 4):
        if len(set(earlier[start : start + 4])) != 1 or len(earlier[start : start + 4]) != 4:
            raise AssertionError(f"turn {turn} was sent a broken history: {earlier!r}")


def make_memory(engine: str, target: str, namespace: str) -> StoreMemory:
    """A memory on ``target``: a SQLite file path, a PostgreSQL DSN or a Redis URL."""
    if engine == "sqlite":
        from agentsession import SQLiteSessionMemory

        return SQLiteSessionMemory(target)
    if engine == "postgres":
        from agentsession import PostgresSessionMemory

        return PostgresSessionMemory(target, schema=namespace, max_size=8, max_threads=8)
    from agentsession import RedisSessionMemory

    return RedisSessionMemory(target, prefix=namespace)


def _turns(proc: int, writer: int, turns: int) -> list[tuple[str, str]]:
    """(session, turn id) of each turn a writer runs, own and shared sessions alternating."""
    plan = []
    for turn in range(turns):
        for session in (own_session(proc, writer), shared_session(proc, writer)):
            plan.append((session, turn_id(proc, writer, turn, session)))
    return plan


@_reporting
def app_server(
    conn: Connection, engine: str, target: str, namespace: str, proc: int, writers: int, turns: int
) -> None:
    """One app server: ``writers`` concurrent writers of ``turns`` turns each, once told to go.

    Even-numbered servers run ``Runner.run_sync`` from threads, odd ones ``Runner.run``
    from asyncio tasks. Sends ``("ready",)``, waits for ``"go"``, then sends
    ``("done", {"errors": [...], "seconds": ...})``.
    """
    memory = make_memory(engine, target, namespace)
    errors: list[str] = []
    conn.send(("ready",))
    assert conn.recv() == "go"
    began = time.perf_counter()
    if proc % 2 == 0:

        def thread(writer: int) -> None:
            for session, turn in _turns(proc, writer, turns):
                try:
                    agent, model = _agent(turn)
                    config = RunConfig(memory=memory, session_id=session)
                    Runner.run_sync(agent, turn, run_config=config)
                    _check_seen(model, turn)
                except Exception:
                    errors.append(traceback.format_exc())

        threads = [threading.Thread(target=thread, args=(w,)) for w in range(writers)]
        for worker in threads:
            worker.start()
        for worker in threads:
            worker.join()
    else:

        async def task(writer: int) -> None:
            for session, turn in _turns(proc, writer, turns):
                try:
                    agent, model = _agent(turn)
                    config = RunConfig(memory=memory, session_id=session)
                    await Runner.run(agent, turn, run_config=config)
                    _check_seen(model, turn)
                except Exception:
                    errors.append(traceback.format_exc())

        async def main() -> None:
            await asyncio.gather(*(task(w) for w in range(writers)))

        asyncio.run(main())
    memory.close()
    conn.send(("done", {"errors": errors, "seconds": time.perf_counter() - began}))


@_reporting
def lease_holder(conn: Connection, engine: str, target: str, namespace: str, session: str) -> None:
    """Starts a run on ``session`` whose tool never returns, so the run holds the
    session's lease (renewing it) until the process is killed.

    Sends ``("holding",)`` from inside the tool: the lease is held then, and the run has
    already been sent the user message it will never store.
    """
    agents.set_tracing_disabled(True)
    memory = make_memory(engine, target, namespace)

    @function_tool
    def hang(key: str) -> str:
        """Never returns."""
        conn.send(("holding",))
        time.sleep(3600)
        return key

    model = ScriptedModel(
        [[function_call("hang", {"key": "k"}, call_id="call-hang")], [assistant_message("x")]]
    )
    agent = Agent(name="A", model=model, tools=[hang])
    Runner.run_sync(agent, "killed turn", run_config=RunConfig(memory=memory, session_id=session))


@_reporting
def restart_runner(
    conn: Connection, engine: str, target: str, namespace: str, proc: int, writers: int
) -> None:
    """An app server that runs turns from ``writers`` threads until told to stop, through
    a server restart: each writer alternates its own session and a shared one.

    Sends ``("ready",)``, waits for ``"go"``, runs until ``"stop"``, then sends
    ``("done", outcomes)``: per turn ``(session, turn id, error, is a StoreError,
    started, ended)`` (``error`` is ``None`` for a run that returned; times are
    ``time.time()``).
    """
    from agentsession import StoreError

    agents.set_tracing_disabled(True)
    memory = make_memory(engine, target, namespace)
    stop = threading.Event()
    outcomes: list[tuple[str, str, str | None, bool, float, float]] = []

    def thread(writer: int) -> None:
        turn = 0
        while not stop.is_set():
            for session in (own_session(proc, writer), shared_session(proc, writer)):
                name = turn_id(proc, writer, turn, session)
                started = time.time()
                try:
                    agent, model = _agent(name)
                    config = RunConfig(memory=memory, session_id=session)
                    Runner.run_sync(agent, name, run_config=config)
                    _check_seen(model, name)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    outcomes.append(
                        (session, name, error, isinstance(exc, StoreError), started, time.time())
                    )
                else:
                    outcomes.append((session, name, None, True, started, time.time()))
            turn += 1

    conn.send(("ready",))
    assert conn.recv() == "go"
    threads = [threading.Thread(target=thread, args=(w,)) for w in range(writers)]
    for worker in threads:
        worker.start()
    assert conn.recv() == "stop"
    stop.set()
    for worker in threads:
        worker.join()
    memory.close()
    conn.send(("done", outcomes))
