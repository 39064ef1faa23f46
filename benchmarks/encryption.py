"""The cost of encryption at rest: each engine's store with and without ``encryption=``.

    python -m benchmarks.encryption           # about a minute on 2 cores
    python -m benchmarks.encryption --quick   # a few seconds; figures only indicative

A workload of its own, outside ``benchmarks.run``: it writes (or replaces) the section
between its markers at the end of ``RESULTS.md``, and ``benchmarks.run`` keeps that
section when it rewrites the file. Per engine (a SQLite file, PostgreSQL, Redis), a
plain store and an encrypted one of the same engine take turns on the same work, call by
call, so both see the same machine load:

- *add*: one turn (two realistic items, ``benchmarks._items``) to a session of 100;
- *first add*: the same to a new session (which creates its data key);
- *read window*: the newest 20 items of a 100-item session (a run's read);
- *read all*: all 100 items;
- *cold read*: the newest 20 from a store opened just before, whose data key of that
  session is not cached yet (one key store read and an unwrap more).

Latencies are per call in milliseconds (median and p90; never averages); the ratio is
encrypted over plain, per engine, computed on the medians.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentsession import Encryption, SQLiteStore, generate_key  # noqa: E402
from benchmarks._items import turn_items  # noqa: E402
from benchmarks._markdown import machine  # noqa: E402
from benchmarks._systems_servers import DEFAULT_POSTGRES, DEFAULT_REDIS, redact  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
#: The markers of this workload's section in RESULTS.md (kept by ``benchmarks.run``).
BEGIN, END = "<!-- section: encryption -->", "<!-- /section: encryption -->"

SESSION_ITEMS = 100
WINDOW = 20


def _open(engine: str, where: Path, name: str, encryption: Encryption | None) -> Any:
    if engine == "sqlite":
        return SQLiteStore(where / f"{name}.db", encryption=encryption)
    if engine == "postgres":
        from agentsession.stores.postgres import PostgresStore

        return PostgresStore(DEFAULT_POSTGRES, schema=name, encryption=encryption)
    from agentsession.stores.redis import RedisStore

    return RedisStore(DEFAULT_REDIS, prefix=name, encryption=encryption)


def _drop(engine: str, name: str) -> None:
    if engine == "postgres":
        import psycopg

        with psycopg.connect(DEFAULT_POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    elif engine == "redis":
        import redis

        client = redis.Redis.from_url(DEFAULT_REDIS)
        try:
            keys = list(client.scan_iter(match=f"{name}*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        finally:
            client.close()


def _timed(call: Callable[..., object], *args: Any) -> float:
    start = time.perf_counter()
    call(*args)
    return (time.perf_counter() - start) * 1000


def _measure(
    engine: str, where: Path, sessions: int, calls: int
) -> dict[str, dict[str, list[float]]]:
    """Per operation, per variant ("plain", "encrypted"): call latencies in ms."""
    key = Encryption(generate_key())
    names = {
        v: f"agentsession_bench_enc_{uuid.uuid4().hex[:8]}_{v}" for v in ("plain", "encrypted")
    }
    options = {"plain": None, "encrypted": key}
    stores = {v: _open(engine, where, names[v], options[v]) for v in names}
    out: dict[str, dict[str, list[float]]] = {}

    def record(op: str, variant: str, ms: float) -> None:
        out.setdefault(op, {}).setdefault(variant, []).append(ms)

    try:
        for n in range(sessions):  # set-up, not measured
            items = [item for turn in range(SESSION_ITEMS // 2) for item in turn_items(turn)]
            for store in stores.values():
                store.add_messages(f"s{n}", items)
        gc.collect()
        gc.freeze()
        order = list(stores)
        for i in range(calls):
            order.reverse()  # each variant goes first half the time
            session = f"s{i % sessions}"
            for variant in order:
                store = stores[variant]
                items = turn_items(i)
                record("read window", variant, _timed(store.get_messages, session, WINDOW))
                record("read all", variant, _timed(store.get_messages, session))
                record("add", variant, _timed(store.add_messages, session, items))
                record("first add", variant, _timed(store.add_messages, f"x{i}", items))
        for i in range(min(calls, sessions)):  # cold: a store opened for each read
            for variant in order:
                fresh = _open(engine, where, names[variant], options[variant])
                try:
                    record("cold read", variant, _timed(fresh.get_messages, f"s{i}", WINDOW))
                finally:
                    fresh.close()
    finally:
        gc.unfreeze()
        for variant, store in stores.items():
            store.close()
            _drop(engine, names[variant])
    return out


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def _section(
    results: dict[str, dict[str, dict[str, list[float]]]], command: str, sizes: str
) -> str:
    facts = machine()
    lines = [
        BEGIN,
        "## Encryption at rest: the cost of `encryption=`",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at "
        f"commit {facts.get('commit', '?')} ({sizes}); not part of `benchmarks.run`: run the "
        "command again to reproduce it. Each engine's store without and with "
        "`encryption=Encryption(key)` (AES-256-GCM, `cryptography` "
        f"{_version('cryptography')}), taking turns call by call on the same work: *add* is "
        "one turn (two items) to a session of 100, *first add* the same to a new session "
        "(which creates its data key), *read window* the newest 20 of a 100-item "
        "session, *read all* its 100 items, *cold read* the newest 20 from a store opened "
        "just before (the session's data key read from the key store and unwrapped). "
        "Milliseconds per call; the ratio is encrypted / plain on the medians.",
        "",
        "| engine | operation | plain median | plain p90 | encrypted median | encrypted p90 "
        "| ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for engine, ops in results.items():
        for op, variants in ops.items():
            plain, sealed = variants["plain"], variants["encrypted"]
            ratio = statistics.median(sealed) / statistics.median(plain)
            lines.append(
                f"| {engine} | {op} | {statistics.median(plain):.3f} | {_p90(plain):.3f} | "
                f"{statistics.median(sealed):.3f} | {_p90(sealed):.3f} | {ratio:.2f}x |"
            )
    lines += [
        "",
        "The *first add* of an encrypted store writes the new session's data key to the key "
        "store before the messages (on SQLite, a durable write to the key file); a store "
        "without encryption runs exactly the code it ran before "
        "(`tests/conformance/test_encryption.py` checks that no hook is wrapped).",
        END,
    ]
    return "\n".join(lines) + "\n"


def _version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:  # noqa: BLE001
        return "?"


def replace_section(text: str, section: str) -> str:
    """``text`` (RESULTS.md) with this workload's section replaced, or appended."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + section.rstrip("\n") + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.encryption", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a few calls; print, write nothing")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, to test the script")
    parser.add_argument("--engines", default="sqlite,postgres,redis")
    args = parser.parse_args(argv)
    sessions, calls = (2, 3) if args.smoke else (5, 30) if args.quick else (20, 400)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="agentsession-bench-enc-") as root:
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            print(f"{engine} ...", file=sys.stderr, flush=True)
            try:
                results[engine] = _measure(engine, Path(root), sessions, calls)
            except Exception as exc:  # noqa: BLE001 - a server that does not answer
                warnings.warn(f"{engine} skipped: {exc}", stacklevel=1)
    command = redact(shlex.join(["python", "-m", "benchmarks.encryption", *(argv or sys.argv[1:])]))
    section = _section(results, command, f"{sessions} sessions, {calls} calls per operation")
    print(section)
    if not (args.quick or args.smoke):
        RESULTS.write_text(
            replace_section(RESULTS.read_text(encoding="utf-8"), section), encoding="utf-8"
        )
        print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
