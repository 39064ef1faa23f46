"""W9 runner level: the whole ``Runner`` with each session system, in the deployment shape
the project exists for.

Every system runs the same agent: an ``agents.testing.ScriptedModel`` that answers each run
with one short reply (no network), tracing disabled in every process, so what differs
between systems is what their session costs a run. The systems:

- *no session*: the SDK's ``Runner`` without a session (the runner's own cost);
- *list session*: a minimal SDK ``Session`` keeping a Python list per session id in the
  process (no storage at all): the limit for any memory;
- the SDK's ``SQLiteSession`` on one file shared by every process (one object per session
  id), driven by the SDK's ``Runner``;
- agentsession's ``Runner`` with ``RunConfig(memory=SQLiteSessionMemory(path),
  session_id=...)`` (defaults, at the run's ``synchronous`` level), one memory per process;
- on servers (16 tasks only): agentsession's ``PostgresSessionMemory`` and
  ``RedisSessionMemory`` through its ``Runner``, against the SDK's ``SQLAlchemySession``
  (``postgresql+psycopg``, one engine) and ``RedisSession`` (one client) on the same
  servers, each in a schema or key prefix of its own, removed at the end.

Two shapes, each worker on its own session, a fixed number of runs per worker after a
warm-up on a session of its own: *4 processes x 4 threads* calling ``run_sync`` (the
SDK's ``Runner.run_sync`` works from non-main threads: it gives each thread an event loop
of its own; agentsession's runs every call on one background loop per process), and
*1 process, 16 tasks* calling ``Runner.run`` on one event loop. Afterwards every session
is read back through its system's own API and checked: each must hold exactly its runs'
items, input then reply per run, in order.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import statistics
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ._core import Context, Gate, Result, Target, attempt, rotate, settle, timed, unsettle
from ._pool import Pool, serve
from ._report import Table, bar_chart, fmt_ms, fmt_ratio, ratio_summary
from ._systems import db_path

__all__ = ("ListSession", "check", "run")

PROCESSES = 4
THREADS = 4
TASKS = 16
#: Measured runs per worker, and warm-up runs per worker (on a session of its own).
RUNS = {"full": 30, "quick": 3, "smoke": 2}
WARMUP = {"full": 3, "quick": 1, "smoke": 1}
SHAPES = {
    "procs": f"{PROCESSES} processes x {THREADS} threads, run_sync",
    "tasks": f"1 process, {TASKS} async tasks, Runner.run",
}
SQLITE = ("none", "list", "sdk", "memory")
SERVERS = ("pg-sdk", "pg-memory", "redis-sdk", "redis-memory")
ENGINE_NAMES = {"postgres": "PostgreSQL", "redis": "Redis"}
PRELOAD = ("agents", "agentsession", "agents.testing", "agents.memory.sqlite_session")
_TAG = re.compile(r"^\[(\d+):(\d+)\] (question|reply)$")

Item = dict[str, Any]


# -- the agent --------------------------------------------------------------------------


def question(worker: int, run_index: int) -> str:
    """The input of a worker's run; its reply carries the same tag."""
    return f"[{worker}:{run_index}] question"


def _reply_to(call: Any) -> list[Any]:
    """The scripted model's answer: the newest user input's tag, as a reply."""
    from agents.testing import assistant_message

    items = (
        call.input if isinstance(call.input, list) else [{"role": "user", "content": call.input}]
    )
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            text = str(item.get("content", ""))
            tag = text.removesuffix(" question")
            return [assistant_message(f"{tag} reply", item_id=f"msg_{tag.strip('[]')}")]
    return [assistant_message("no question")]


def make_agent(runs: int) -> Any:
    """An agent whose ``ScriptedModel`` answers ``runs`` runs (plus slack), one reply each."""
    from agents import Agent
    from agents.testing import ModelStep, ScriptedModel

    model = ScriptedModel([ModelStep.respond(_reply_to) for _ in range(runs + 2)])
    return Agent(name="assistant", instructions="Answer in one line.", model=model)


# -- the systems, as a user would wire them into a run ---------------------------------


class ListSession:
    """The cheapest session the SDK can have: a Python list, in this process only."""

    session_settings = None

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.items: list[Any] = []

    async def get_items(self, limit: int | None = None) -> list[Any]:
        if limit is None:
            return list(self.items)
        return self.items[-limit:] if limit > 0 else []

    async def add_items(self, items: list[Any]) -> None:
        self.items.extend(items)

    async def pop_item(self) -> Any:
        return self.items.pop() if self.items else None

    async def clear_session(self) -> None:
        self.items.clear()


class Runs:
    """How one system runs the agent on a session, and reads a session back.

    ``where`` is a database file for SQLite systems, a server URL otherwise (with
    ``namespace``, the schema or key prefix). Open with ``await open()`` inside the loop
    the async runs will use; ``run_sync`` may be called from any thread.
    """

    process_local = False  # the sessions live in the process (read back there)

    def __init__(self, where: str, synchronous: str, namespace: str) -> None:
        self.where = where
        self.synchronous = synchronous
        self.namespace = namespace
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    async def open(self) -> None:
        """Create what the runs share (tables, pools); called once, before any run."""

    def make(self, session_id: str) -> Any:
        """A new SDK ``Session`` bound to ``session_id`` (``None``: no session)."""
        return None

    def session(self, session_id: str) -> Any:
        with self._lock:
            found = self._sessions.get(session_id)
            if found is None:
                found = self._sessions[session_id] = self.make(session_id)
            return found

    async def run(self, agent: Any, text: str, session_id: str) -> None:
        import agents

        await agents.Runner.run(agent, text, session=self.session(session_id))

    def run_sync(self, agent: Any, text: str, session_id: str) -> None:
        import agents

        agents.Runner.run_sync(agent, text, session=self.session(session_id))

    async def read(self, session_id: str) -> list[Any] | None:
        """The session's items through the system's own API (``None``: nothing stored)."""
        return None

    async def aclose(self) -> None:
        self._sessions.clear()


class NoSession(Runs):
    pass


class ListSessions(Runs):
    process_local = True

    def make(self, session_id: str) -> ListSession:
        return ListSession(session_id)

    async def read(self, session_id: str) -> list[Any] | None:
        found = self._sessions.get(session_id)
        return [] if found is None else list(found.items)


class SDKSQLite(Runs):
    """``agents.SQLiteSession(session_id, path)``, one object per session id."""

    def make(self, session_id: str) -> Any:
        from agents import SQLiteSession

        return SQLiteSession(session_id, self.where)

    async def open(self) -> None:
        self.make("__schema__").close()  # the tables exist before the workers start

    async def read(self, session_id: str) -> list[Any] | None:
        session = self.make(session_id)
        try:
            return await session.get_items()  # type: ignore[no-any-return]
        finally:
            session.close()

    async def aclose(self) -> None:
        for session in self._sessions.values():
            session.close()
        await super().aclose()


class OurMemory(Runs):
    """agentsession's ``Runner`` with ``RunConfig(memory=..., session_id=...)``."""

    memory: Any = None

    def build(self) -> Any:
        raise NotImplementedError

    async def open(self) -> None:
        self.memory = self.build()
        await self.memory.get_messages("__schema__", 1)  # schema and pool are ready

    def _config(self, session_id: str) -> Any:
        import agentsession

        return agentsession.RunConfig(memory=self.memory, session_id=session_id)

    async def run(self, agent: Any, text: str, session_id: str) -> None:
        import agentsession

        await agentsession.Runner.run(agent, text, run_config=self._config(session_id))

    def run_sync(self, agent: Any, text: str, session_id: str) -> None:
        import agentsession

        agentsession.Runner.run_sync(agent, text, run_config=self._config(session_id))

    async def read(self, session_id: str) -> list[Any] | None:
        return await self.memory.get_messages(session_id)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if self.memory is not None:
            await self.memory.aclose()


class OurSQLite(OurMemory):
    def build(self) -> Any:
        from agentsession import SQLiteSessionMemory

        return SQLiteSessionMemory(self.where, synchronous=self.synchronous)


class OurPostgres(OurMemory):
    def build(self) -> Any:
        from agentsession import PostgresSessionMemory

        return PostgresSessionMemory(self.where, schema=self.namespace)


class OurRedis(OurMemory):
    def build(self) -> Any:
        from agentsession import RedisSessionMemory

        return RedisSessionMemory(self.where, prefix=self.namespace)


class SDKServer(Runs):
    """The SDK's session on a server, one object per session id over one shared handle
    (``_systems_servers``: one SQLAlchemy engine, or one async Redis client)."""

    handle: Any = None

    def make(self, session_id: str) -> Any:
        return self.handle.make(session_id)

    async def read(self, session_id: str) -> list[Any] | None:
        return await self.handle.make(session_id).get_items()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await super().aclose()
        if self.handle is not None:
            await self.handle.aclose()


class SDKPostgres(SDKServer):
    async def open(self) -> None:
        from ._systems_servers import SQLAlchemyPostgresHandle

        self.handle = SQLAlchemyPostgresHandle(self.where, self.namespace)
        await self.handle._setup()  # create_tables=True, once


class SDKRedis(SDKServer):
    async def open(self) -> None:
        from ._systems_servers import RedisSDKHandle

        self.handle = RedisSDKHandle(self.where, self.namespace)


ADAPTERS: dict[str, type[Runs]] = {
    "none": NoSession,
    "list": ListSessions,
    "sdk": SDKSQLite,
    "memory": OurSQLite,
    "pg-sdk": SDKPostgres,
    "pg-memory": OurPostgres,
    "redis-sdk": SDKRedis,
    "redis-memory": OurRedis,
}
#: The SDK session each of ours is compared with.
SDK_OF = {"memory": "sdk", "pg-memory": "pg-sdk", "redis-memory": "redis-sdk"}


def session_id(shape: str, tag: str, worker: int) -> str:
    return f"w9-{shape}-{tag}-{worker}"


# -- the read-back check ----------------------------------------------------------------


def _tag(item: Any) -> tuple[int, int, str] | None:
    """``(worker, run, "question" | "reply")`` of an item W9 wrote, else ``None``."""
    if not isinstance(item, dict):
        return None
    content = item.get("content")
    if item.get("role") == "assistant" and isinstance(content, list) and content:
        content = content[0].get("text") if isinstance(content[0], dict) else None
    match = _TAG.match(content) if isinstance(content, str) else None
    if match is None:
        return None
    return int(match[1]), int(match[2]), match[3]


def check(items: list[Any], worker: int, runs: int, failed: set[int] | None = None) -> list[int]:
    """``[lost, foreign, reordered]`` for one worker's session read back.

    *Lost*: runs that returned but whose input or reply is missing (a run that raised was
    not acknowledged). *Foreign*: items that are not this worker's (another session's, or
    unknown), and duplicates. *Reordered*: items out of place in "input then reply per run,
    in run order".
    """
    failed = failed or set()
    rank = {"question": 0, "reply": 1}
    seen: set[tuple[int, str]] = set()
    own: list[tuple[int, int]] = []
    foreign = 0
    for item in items:
        tag = _tag(item)
        if tag is None or tag[0] != worker or not 0 <= tag[1] < runs or (tag[1], tag[2]) in seen:
            foreign += 1
            continue
        seen.add((tag[1], tag[2]))
        own.append((tag[1], rank[tag[2]]))
    lost = sum(
        1
        for index in range(runs)
        if index not in failed and not {(index, "question"), (index, "reply")} <= seen
    )
    reordered = sum(later < earlier for earlier, later in zip(own, own[1:], strict=False))
    return [lost, foreign, reordered]


# -- 4 processes x 4 threads ------------------------------------------------------------


def _thread_loop_close() -> None:
    """Close the event loop the SDK's ``run_sync`` left on this thread (if any)."""
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = policy.get_event_loop()
        except RuntimeError:
            return
    if not loop.is_running() and not loop.is_closed():
        loop.close()


def _process_job(
    conn: Connection, key: str, where: str, synchronous: str, tag: str, process: int,
    runs: int, warmup: int,
) -> dict[str, Any]:  # fmt: skip
    adapter = ADAPTERS[key](where, synchronous, "")
    asyncio.run(adapter.open())
    ready = threading.Barrier(THREADS + 1)
    go = threading.Barrier(THREADS + 1)
    start_at = [0.0]
    reports: list[Any] = [None] * THREADS

    def body(index: int) -> None:
        worker = process * THREADS + index
        failed: list[int] = []
        errors: list[str] = []
        agent: Any = None
        try:
            agent = make_agent(runs + warmup)
            for run_index in range(warmup):
                adapter.run_sync(agent, question(worker, run_index), f"w9-warmup-{tag}-{worker}")
        except Exception as exc:  # noqa: BLE001 - the measured runs are then not made
            errors.append(f"warm-up: {type(exc).__name__}: {exc}")
        ready.wait()
        go.wait()
        while timed() < start_at[0]:
            time.sleep(0.0002)
        start = timed()
        for run_index in range(runs if not errors else 0):
            try:
                adapter.run_sync(
                    agent, question(worker, run_index), session_id("procs", tag, worker)
                )
            except Exception as exc:  # noqa: BLE001 - counted, and the first reported
                errors.append(f"{type(exc).__name__}: {exc}")
                failed.append(run_index)
        if errors and not failed:  # the warm-up failed: no run was made
            failed = list(range(runs))
        reports[index] = {"worker": worker, "start": start, "end": timed(), "errors": errors,
                          "failed": failed}  # fmt: skip
        _thread_loop_close()

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        ready.wait()
        conn.send("ready")
        start_at[0] = conn.recv()
        go.wait()
        before = _cpu()
        for thread in threads:
            thread.join()
        cpu = _cpu() - before
        items: dict[int, list[Any] | None] = {}
        if adapter.process_local:

            async def read_all() -> None:
                for report in reports:
                    worker = report["worker"]
                    items[worker] = await adapter.read(session_id("procs", tag, worker))

            asyncio.run(read_all())
        return {"threads": reports, "items": items, "cpu": cpu}
    finally:
        asyncio.run(adapter.aclose())


def _cpu() -> float:
    """User plus system CPU seconds this process has used, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _job(conn: Connection, job: tuple[Any, ...]) -> dict[str, Any]:
    import agents

    agents.set_tracing_disabled(True)
    return _process_job(conn, *job)


def _serve(conn: Connection) -> None:
    """A worker process: run jobs from the parent until it sends ``None``."""
    serve(conn, PRELOAD, _job)


def _pool() -> Pool:
    return Pool(_serve, PROCESSES, PRELOAD)


# -- 16 tasks ---------------------------------------------------------------------------


async def _tasks_round(
    adapter: Runs, tag: str, runs: int, warmup: int
) -> tuple[list[dict[str, Any]], float]:
    """Each task's report, and the process's CPU seconds from the start line to the end."""
    gate = Gate(TASKS, threads=False)
    started: list[float] = []

    async def worker(index: int) -> dict[str, Any]:
        agent = make_agent(runs + warmup)
        for run_index in range(warmup):
            await adapter.run(agent, question(index, run_index), f"w9-warmup-{tag}-{index}")
        await gate.wait()
        if not started:
            started.append(_cpu())
        failed: list[int] = []
        errors: list[str] = []
        start = timed()
        for run_index in range(runs):
            try:
                await adapter.run(
                    agent, question(index, run_index), session_id("tasks", tag, index)
                )
            except Exception as exc:  # noqa: BLE001 - counted, and the first reported
                errors.append(f"{type(exc).__name__}: {exc}")
                failed.append(run_index)
        return {"worker": index, "start": start, "end": timed(), "errors": errors,
                "failed": failed}  # fmt: skip

    reports = list(await asyncio.gather(*(worker(i) for i in range(TASKS))))
    return reports, _cpu() - started[0]


# -- the workload -----------------------------------------------------------------------


@dataclass
class Measured:
    """What one (shape, system) pair measured over the rounds."""

    rates: dict[int, float] = field(default_factory=dict)  # runs/s, by round
    #: CPU ms per run of the measuring process(es), by round: user plus system, every
    #: thread (a server's own CPU is not in it)
    cpu: dict[int, float] = field(default_factory=dict)
    faults: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # errors, lost, ...
    runs: int = 0  # acknowledged runs checked
    first_error: str = ""


def _account(
    measured: Measured, round_index: int, reports: list[dict[str, Any]],
    read: dict[int, list[Any] | None], runs: int, cpu: float,
) -> None:  # fmt: skip
    wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    total = sum(runs - len(r["failed"]) for r in reports)
    measured.rates[round_index] = total / wall if wall > 0 else float("nan")
    if total:
        measured.cpu[round_index] = cpu / total * 1000
    measured.runs += total
    for report in reports:
        measured.faults[0] += len(report["errors"])
        if report["errors"] and not measured.first_error:
            measured.first_error = report["errors"][0]
        items = read.get(report["worker"])
        if items is not None:
            found = check(items, report["worker"], runs, set(report["failed"]))
            for index, value in enumerate(found, start=1):
                measured.faults[index] += value


def run(ctx: Context, charts: Path) -> Result:
    """Run W9 and return its tables, targets and chart."""
    import agents

    agents.set_tracing_disabled(True)
    return asyncio.run(_run(ctx, charts))


async def _run(ctx: Context, charts: Path) -> Result:
    from . import w8_servers
    from ._systems_servers import reachable, redact, sweep

    runs, warmup = RUNS[ctx.mode], WARMUP[ctx.mode]
    base = f"agentsession_bench_{uuid.uuid4().hex[:10]}"
    result = Result(
        "W9",
        "W9 runner level",
        f"The whole run: the Runner with a scripted model (one short reply per run, no "
        f"network) and tracing off, so a system's runs/s is the runner's cost plus its "
        f"session's. Two shapes, each worker on its own session, {runs} runs per worker "
        f"after {warmup} warm-up run(s) on a session of its own: {SHAPES['procs']} (the "
        f"SQLite systems, one file per system shared by the processes) and "
        f"{SHAPES['tasks']} on one event loop (also on PostgreSQL and Redis, each system in "
        f"a schema or key prefix `{base}_*` of its own, removed at the end). Runs/s is all "
        f"runs over the wall time, median over {ctx.scale.rounds} round(s) with systems in "
        "rotating order; ratios are per round. Every session is then read back through its "
        "system's own API and checked for lost, foreign and reordered items.",
    )
    ctx.log(f"  W9 namespace: {base}")
    chosen = {s.key: s for s in ctx.systems if s.key in ADAPTERS}
    labels = {key: chosen[key].label for key in ADAPTERS if key in chosen}  # tables' order
    measured: dict[tuple[str, str], Measured] = {}
    directory = ctx.fresh_dir("W9")
    facts: list[str] = []
    servers: dict[str, str] = {}
    try:
        keys = [k for k in SQLITE if k in chosen]
        if keys:
            await _procs(ctx, result, keys, directory, runs, warmup, measured)
        tasks: dict[str, Runs] = {}
        for key in SQLITE:
            if key in chosen:
                where = db_path(directory / f"tasks-{key}", chosen[key].layout)
                where.parent.mkdir(parents=True, exist_ok=True)
                tasks[key] = ADAPTERS[key](str(where), ctx.synchronous, "")
        for engine, name in ENGINE_NAMES.items():
            keys = [k for k in SERVERS if k in chosen and chosen[k].engine == engine]
            if not keys:
                continue
            url = ctx.servers.get(engine, w8_servers.DEFAULTS[engine])
            reason = reachable(engine, url)
            if reason is not None:
                flag = w8_servers.ENGINES[engine][1]
                message = f"skipping the {name} systems: {reason} (give another with {flag})"
                warnings.warn(message, stacklevel=1)
                result.notes.append(message)
                continue
            servers[engine] = url
            facts.append(f"{w8_servers.server_facts(engine, url)} at {redact(url)}")
            for key in keys:
                namespace = f"{base}_w9_{key.replace('-', '_')}"
                tasks[key] = ADAPTERS[key](url, ctx.synchronous, namespace)
        await _tasks(ctx, result, tasks, runs, warmup, measured)
    finally:
        ctx.drop_dir(directory)
        if servers:
            try:
                for line in sweep(servers, base, set(servers)):
                    ctx.log(f"  W9 removed {line}")
            except Exception as exc:  # noqa: BLE001 - reported: the names to remove by hand
                message = f"W9 could not remove what starts with {base}: {exc!r}"
                ctx.log("  ! " + message)
                result.notes.append(message)
    if facts:
        result.summary += " Servers: " + "; ".join(facts) + "."
    _report(result, labels, measured, charts)
    return result


async def _procs(
    ctx: Context, result: Result, keys: list[str], directory: Path, runs: int, warmup: int,
    measured: dict[tuple[str, str], Measured],
) -> None:  # fmt: skip
    chosen = {s.key: s for s in ctx.systems}
    pool = await asyncio.to_thread(_pool)
    try:
        for round_index in range(ctx.scale.rounds):
            for key in rotate(keys, round_index):  # type: ignore[arg-type]
                where = str(db_path(directory / f"procs-{key}", chosen[key].layout))
                Path(where).parent.mkdir(parents=True, exist_ok=True)
                tag = f"r{round_index}"

                async def one(
                    key: str = key,
                    where: str = where,
                    tag: str = tag,
                    round_index: int = round_index,
                ) -> None:
                    reader = ADAPTERS[key](where, ctx.synchronous, "")
                    await reader.open()  # the file and its tables exist before the workers
                    try:
                        jobs = [
                            (key, where, ctx.synchronous, tag, process, runs, warmup)
                            for process in range(PROCESSES)
                        ]
                        reports = await asyncio.to_thread(pool.run, key, jobs)
                        read: dict[int, list[Any] | None] = {}
                        for process in reports:
                            read.update(process["items"])
                        if not reader.process_local:
                            for process in reports:
                                for report in process["threads"]:
                                    worker = report["worker"]
                                    sid = session_id("procs", tag, worker)
                                    read[worker] = await reader.read(sid)
                    finally:
                        await reader.aclose()
                    threads = [r for process in reports for r in process["threads"]]
                    cpu = sum(process["cpu"] for process in reports)
                    got = measured.setdefault(("procs", key), Measured())
                    _account(got, round_index, threads, read, runs, cpu)

                label = f"W9 {SHAPES['procs']}: {chosen[key].label}"
                await attempt(ctx, label, result.notes, one)
            ctx.log(f"  W9 processes round {round_index + 1}/{ctx.scale.rounds} done")
    finally:
        await asyncio.to_thread(pool.close)


async def _tasks(
    ctx: Context, result: Result, adapters: dict[str, Runs], runs: int, warmup: int,
    measured: dict[tuple[str, str], Measured],
) -> None:  # fmt: skip
    opened: dict[str, Runs] = {}
    for key, adapter in adapters.items():
        if await attempt(ctx, f"W9 {key} set-up", result.notes, _opened, adapter) is not None:
            opened[key] = adapter
        else:
            await attempt(ctx, f"W9 {key} close", result.notes, adapter.aclose)
    settle()
    try:
        for round_index in range(ctx.scale.rounds):
            for key in rotate(list(opened), round_index):  # type: ignore[arg-type]
                adapter = opened[key]
                tag = f"r{round_index}"

                async def one(
                    key: str = key,
                    adapter: Runs = adapter,
                    tag: str = tag,
                    round_index: int = round_index,
                ) -> None:
                    reports, cpu = await _tasks_round(adapter, tag, runs, warmup)
                    read = {
                        r["worker"]: await adapter.read(session_id("tasks", tag, r["worker"]))
                        for r in reports
                    }
                    got = measured.setdefault(("tasks", key), Measured())
                    _account(got, round_index, reports, read, runs, cpu)

                await attempt(ctx, f"W9 {SHAPES['tasks']}: {key}", result.notes, one)
            ctx.log(f"  W9 tasks round {round_index + 1}/{ctx.scale.rounds} done")
    finally:
        unsettle()
        for key, adapter in opened.items():
            await attempt(ctx, f"W9 {key} close", result.notes, adapter.aclose)


async def _opened(adapter: Runs) -> bool:
    await adapter.open()
    return True


# -- report -----------------------------------------------------------------------------


def _ratios(ours: Measured, theirs: Measured) -> list[float]:
    """Ours over theirs, per round both measured."""
    return [ours.rates[r] / theirs.rates[r] for r in ours.rates if theirs.rates.get(r, 0) > 0]


def _report(
    result: Result,
    labels: dict[str, str],
    measured: dict[tuple[str, str], Measured],
    charts: Path,
) -> None:
    table = Table(
        "W9 runs/s (median over rounds [range]) and ratios against the references",
        [
            "system",
            "shape",
            "runs/s",
            "CPU ms per run",
            "vs SDK session",
            "vs list session",
            "vs no session",
        ],
    )
    checks = Table(
        "W9 read-back: every session checked after the runs (all rounds)",
        ["system", "shape", "runs checked", "errors", "lost", "foreign", "reordered"],
    )
    for shape, name in SHAPES.items():
        for key in labels:
            got = measured.get((shape, key))
            if got is None:
                continue
            median, low, high = ratio_summary(list(got.rates.values()))
            spread = "" if low == high else f" [{fmt_ms(low)}-{fmt_ms(high)}]"
            cells = []
            for ref in (SDK_OF.get(key, "sdk"), "list", "none"):
                other = measured.get((shape, ref))
                cells.append("-" if other is None else fmt_ratio(_ratios(got, other)))
            cpu = _cpu_of(measured, shape, key)
            cpu_cell = "-" if cpu is None else f"{cpu:.2f}"
            table.rows.append([labels[key], name, fmt_ms(median) + spread, cpu_cell, *cells])
            errors, lost, foreign, reordered = got.faults
            stored = "-" if key == "none" else None
            checks.rows.append(
                [labels[key], name, str(got.runs), str(errors),
                 *([stored] * 3 if stored else [str(lost), str(foreign), str(reordered)])]
            )  # fmt: skip
            if got.first_error:
                result.notes.append(f"{labels[key]} ({name}): first error: {got.first_error}")
    table.note = (
        "The SDK session a row is compared with is the one on the same storage: "
        "`SQLiteSession` for SQLite, `SQLAlchemySession` (psycopg) for PostgreSQL, "
        "`RedisSession` for Redis. CPU ms per run: user plus system CPU of the process(es) "
        "making the runs, every thread, over the measured runs (median over rounds); a "
        "server's own CPU is not in it. A process's runs keep at most one core busy (its "
        "event loop holds the GIL), so runs/s is at most the cores the shape can use / CPU "
        "per run."
    )
    result.tables += [table, checks]
    result.targets += _targets(labels, measured)
    chart = bar_chart(
        charts / "w9_runner.png",
        "W9: runs/s at the runner level (higher is better)",
        [
            (
                f"runs/s, {name}",
                {
                    labels[key]: {
                        "runs/s": statistics.median(measured[(shape, key)].rates.values())
                    }
                    for key in labels
                    if (shape, key) in measured
                },
                False,
            )
            for shape, name in SHAPES.items()
            if any(s == shape for s, _ in measured)
        ],
    )
    if chart is not None:
        result.charts.append(chart)


GOALS = (
    ("procs", "memory", "sdk", 2.0),
    ("procs", "memory", "list", 0.7),
    ("tasks", "memory", "sdk", 1.5),
    ("tasks", "memory", "list", 0.7),
    ("tasks", "pg-memory", "pg-sdk", 1.5),
    ("tasks", "pg-memory", "list", 0.7),
    ("tasks", "redis-memory", "redis-sdk", 1.5),
    ("tasks", "redis-memory", "list", 0.7),
)


#: The store calls one run with memory makes (``agentsession._run_guard``, ``session``).
_TWO_CALLS = (
    "two store calls: lock_and_read (take the run lease and read the history) and, when "
    "the run ends, write_and_unlock (add the run's items and give the lease back); "
    "Runner.run makes each in a thread of the memory's pool (a thread hop per call), "
    "run_sync in its own thread (no hop)"
)
RUN_CALLS = {
    "memory": _TWO_CALLS + ". The lease is a kernel lock on a byte of a side file (no "
    "database write), so Runner.run takes it and reads on the event loop; the add is one "
    "group-commit transaction",
    "pg-memory": _TWO_CALLS + ". The lease is a PostgreSQL advisory lock (a round trip "
    "each way, besides the read's and the add's)",
    "redis-memory": _TWO_CALLS + ". Each is one Lua script: one round trip",
}


#: What would cut a memory's CPU per run, which bounds its runs/s (see ``_cpu_budget``).
CUT_CPU = {
    "memory": "less store work per run: `python -m benchmarks.run_cost` gives a run's CPU "
    "path by path (no session, list, memory; the SDK's runner and ours); the store's part "
    "is the lease and the read before the run and the one commit after it",
    "pg-memory": "less client work per run: its four round trips (lease, read, add, "
    "unlock) are psycopg calls in worker threads; an asyncio driver on the event loop "
    "(no hop) is ruled out by the design (blocking stores adapted through worker "
    "threads), and the lease's two round trips cannot join the read's and the add's "
    "while the lease is a lock on a connection of its own",
    "redis-memory": "less client work per run: its two scripts are redis-py calls in "
    "worker threads (a thread hop each); an asyncio client on the event loop is ruled "
    "out by the design (blocking stores adapted through worker threads)",
}


def _cpu_of(measured: dict[tuple[str, str], Measured], shape: str, key: str) -> float | None:
    got = measured.get((shape, key))
    if got is None or not got.cpu:
        return None
    return statistics.median(got.cpu.values())


def _cores(shape: str) -> int:
    """How many cores a shape's runs can keep busy: one per process (its event loop holds
    the GIL), at most the machine's."""
    return min(PROCESSES, os.cpu_count() or 1) if shape == "procs" else 1


def _cpu_budget(
    measured: dict[tuple[str, str], Measured], shape: str, key: str, wanted: float
) -> str | None:
    """What ``wanted`` runs/s asks of a run's CPU: with every core the shape can use busy,
    at most ``cores / wanted`` seconds; and how busy the memory's runs kept them."""
    ours = _cpu_of(measured, shape, key)
    if ours is None or wanted <= 0:
        return None
    cores = _cores(shape)
    used = statistics.median(measured[(shape, key)].rates.values()) * ours / 1000
    where = "1 core" if cores == 1 else f"{cores} cores"
    return (
        f"{wanted:.0f} runs/s with {where} busy (one event loop per process) leaves a run "
        f"{cores / wanted * 1000:.2f} ms of CPU at most; the memory's run costs {ours:.2f} "
        f"ms, and its runs kept {used:.2f} of the {where} busy"
    )


def _targets(labels: dict[str, str], measured: dict[tuple[str, str], Measured]) -> list[Target]:
    """The issue's targets: runs/s against the SDK's session on the same storage and
    against the list session, per shape; every session read back intact."""
    targets: list[Target] = []
    for shape, key, ref, limit in GOALS:
        ours, theirs = measured.get((shape, key)), measured.get((shape, ref))
        if ours is None or theirs is None:
            continue
        keys = [k for k in (key, SDK_OF[key], "list", "none") if (shape, k) in measured]
        figures = ", ".join(
            f"{labels[k]} {statistics.median(measured[(shape, k)].rates.values()):.0f}"
            for k in keys
        )
        cpu = ", ".join(
            f"{labels[k]} {value:.2f}"
            for k in keys
            if (value := _cpu_of(measured, shape, k)) is not None
        )
        scope = f"the {PROCESSES} processes together" if shape == "procs" else "the one process"
        close = CUT_CPU[key]
        wanted = limit * statistics.median(theirs.rates.values())
        budget = _cpu_budget(measured, shape, key, wanted)
        if budget is not None:
            close = f"{budget}. What would cut it: {close}"
        ceiling = measured.get((shape, "list"))
        if ref != "list" and ceiling is not None:
            most = statistics.median(ceiling.rates.values())
            if wanted > most:
                close = (
                    f"nothing a memory can do on this machine: {limit:g}x {labels[ref]} "
                    f"is {wanted:.0f} runs/s, more than the list session's {most:.0f} "
                    "(no storage at all, the limit for any memory); the SDK's session "
                    f"already runs at {wanted / limit / most:.2f}x the list session here"
                )
        targets.append(
            Target(
                "W9",
                f"{SHAPES[shape]}: runs/s >= {limit:g}x {labels[ref]}",
                labels[key],
                _ratios(ours, theirs),
                ">=",
                limit,
                why=f"runs/s (median over rounds): {figures}. CPU ms per run ({scope}, user "
                f"and system, servers not counted): {cpu}. With the memory a run makes "
                f"these store calls: {RUN_CALLS[key]}; the list session makes none",
                close=close,
            )
        )
    for (shape, key), got in measured.items():
        if key not in SDK_OF:
            continue
        errors, lost, foreign, reordered = got.faults
        for goal, value in (("errors", errors), ("lost + foreign + reordered", lost + foreign
                                                 + reordered)):  # fmt: skip
            targets.append(
                Target(
                    "W9",
                    f"{SHAPES[shape]}: {goal} = 0",
                    labels[key],
                    [float(value)],
                    "<=",
                    0.0,
                    why=got.first_error or "see the W9 read-back table",
                    close="a correctness bug: must be fixed",
                    unit="",
                )
            )
    return targets
