"""Run every benchmark and write benchmarks/RESULTS.md and benchmarks/charts/*.png.

    python -m benchmarks.run              # the full run (under 15 minutes on 2 cores)
    python -m benchmarks.run --quick      # a short run (written under the temp dir)
    python -m benchmarks.run --only W1,W3 --systems raw,store,memory,sdk
    python -m benchmarks.run --only W8 --pg postgresql://... --redis redis://...

``python benchmarks/run.py`` works too. Optional competitors (aiosqlite, SQLAlchemy) and
charts (matplotlib) come with ``pip install -e '.[bench]'``, W8's drivers with
``.[postgres,redis]``; without them those systems are skipped with a warning, and so are
W8's systems on a server that does not answer.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

if not __package__:  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (  # noqa: E402
    w1_chat,
    w2_window,
    w3_server,
    w4_procs,
    w5_large,
    w6_resources,
    w7_cold,
    w8_servers,
    w9_runner,
)
from benchmarks._core import SCALES, Context, Result  # noqa: E402
from benchmarks._markdown import machine, write_results  # noqa: E402
from benchmarks._systems import SYSTEMS, available, sdk_synchronous  # noqa: E402
from benchmarks._systems_servers import DEFAULT_POSTGRES, DEFAULT_REDIS, redact  # noqa: E402

WORKLOADS = {
    "W1": w1_chat.run,
    "W2": w2_window.run,
    "W3": w3_server.run,
    "W4": w4_procs.run,
    "W5": w5_large.run,
    "W6": w6_resources.run,
    "W7": w7_cold.run,
    "W8": w8_servers.run,
    "W9": w9_runner.run,
}
HERE = Path(__file__).resolve().parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark agentsession against the Agents SDK's sessions and raw "
        "sqlite3; write RESULTS.md and one PNG chart per workload.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, 1 round (about 30 s)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, to test the harness")
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help="workloads to run (W3 includes W3b)"
    )
    parser.add_argument(
        "--systems",
        default=",".join(s.key for s in SYSTEMS),
        help="systems to run (raw is the limit; store and memory are agentsession); a "
        "W8 system is also selected by its kind (store: pg-store and redis-store) or its "
        "server (pg, redis)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where RESULTS.md and charts/ go; by default benchmarks/ for a full run, and a "
        "directory under the system's temp dir for --quick and --smoke (so a short run never "
        "overwrites the committed results)",
    )
    parser.add_argument(
        "--synchronous",
        default=sdk_synchronous(),
        choices=("OFF", "NORMAL", "FULL", "EXTRA"),
        help="SQLite synchronous level for agentsession and raw sqlite3 (default: the "
        "level the SDK's sessions run at on this SQLite build)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="temp root for databases")
    parser.add_argument(
        "--pg",
        default=os.environ.get("AGENTSESSION_BENCH_POSTGRES", DEFAULT_POSTGRES),
        help="W8's PostgreSQL server, a postgresql:// URL (env AGENTSESSION_BENCH_POSTGRES); "
        "each system works in a schema of its own, dropped at the end",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("AGENTSESSION_BENCH_REDIS", DEFAULT_REDIS),
        help="W8's Redis server (env AGENTSESSION_BENCH_REDIS); each system writes keys "
        "under a prefix of its own, deleted at the end",
    )
    return parser.parse_args(argv)


def _preload() -> None:
    """Import every library before measuring, so no workload pays for an import."""
    for module in ("agentsession", "agents", "agents.extensions.memory.async_sqlite_session",
                   "agents.extensions.memory.sqlalchemy_session",
                   "agents.extensions.memory.redis_session", "agentsession.stores.postgres",
                   "agentsession.stores.redis", "sqlalchemy.dialects.postgresql.psycopg",
                   "psycopg", "psycopg_pool", "redis", "redis.asyncio"):  # fmt: skip
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a system that cannot import fails at set-up
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the chosen workloads and write the results; return the exit status."""
    args = parse(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    only = [w.strip().upper().removesuffix("B") for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    keys = [k.strip() for k in args.systems.split(",") if k.strip()]
    warnings.simplefilter("default")
    systems = available(keys, only)
    _preload()
    if args.synchronous != sdk_synchronous():
        warnings.warn(
            f"--synchronous {args.synchronous} differs from the SDK's "
            f"{sdk_synchronous()}: the comparison is not at the same durability",
            stacklevel=1,
        )
    command = redact(shlex.join(["python", "-m", "benchmarks.run", *sys.argv[1:]]))
    if argv is not None:
        command = redact(shlex.join(["python", "-m", "benchmarks.run", *argv]))
    facts = machine()
    started = time.perf_counter()
    out = args.out
    if out is None:
        out = HERE if mode == "full" else Path(tempfile.gettempdir()) / f"agentsession-bench-{mode}"
    charts = out / "charts"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="agentsession-bench-", dir=args.workdir) as root:
        ctx = Context(mode, SCALES[mode], systems, args.synchronous, Path(root),
                      log=lambda line: print(line, file=sys.stderr, flush=True),
                      servers={"postgres": args.pg, "redis": args.redis})  # fmt: skip
        for key in dict.fromkeys(only):
            ctx.log(f"{key} ...")
            ctx.systems = [s for s in systems if s.workloads is None or key in s.workloads]
            begun = time.perf_counter()
            result = WORKLOADS[key](ctx, charts)
            result.seconds = time.perf_counter() - begun
            ctx.log(f"{key} done in {result.seconds:.1f} s")
            for table in result.tables:
                print(table.console() + "\n", flush=True)
            results.append(result)
    seconds = time.perf_counter() - started
    path = write_results(out / "RESULTS.md", ctx, results, facts, command, seconds)
    targets = [t for r in results for t in r.targets]
    for target in targets:
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[target.passed]
        print(f"{verdict:4}  {target.workload:4} {target.system:35} {target.goal}")
    print(f"\nwrote {path} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
