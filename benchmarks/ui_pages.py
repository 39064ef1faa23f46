"""How fast ``agentsession ui`` answers its first pages on a big store.

Builds a SQLite file with ``--sessions`` sessions (10,000 by default) and one session of
``--messages`` messages (2,000: user and assistant turns with a tool call and its output
each), serves the inspector with uvicorn on 127.0.0.1 (a free port, in this process),
and times, over one HTTP connection, the first page of the sessions list and the first
page of the long transcript: the first request of each, then ``--repeat`` more (median,
95th percentile). Prints a Markdown table; nothing is asserted or written elsewhere.

    python -m benchmarks.ui_pages
    python -m benchmarks.ui_pages --sessions 1000 --messages 500 --repeat 5
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from agentsession import SQLiteStore
from agentsession.ui import Settings, create_app
from agentsession.ui.security import new_token
from agentsession.ui.server import address, bind

LONG = "long-transcript"


def _turn(n: int) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"Question {n}: what is the weather in city {n}?"},
        {
            "type": "function_call",
            "call_id": f"c{n}",
            "name": "get_weather",
            "arguments": f'{{"city": "city {n}"}}',
        },
        {"type": "function_call_output", "call_id": f"c{n}", "output": f"Sunny, {n % 30} °C"},
        {"role": "assistant", "content": [{"type": "output_text", "text": f"Sunny in {n}."}]},
    ]


def build(path: Path, sessions: int, messages: int) -> None:
    """Fill ``path`` with ``sessions`` short sessions and one of ``messages`` messages."""
    with SQLiteStore(path) as store:
        items: list[dict[str, Any]] = []
        n = 0
        while len(items) < messages:
            items += _turn(n)
            n += 1
        store.add_messages(LONG, items[:messages])
        for i in range(sessions - 1):
            store.add_messages(f"session-{i:05}", _turn(i)[:1] + _turn(i)[3:])
            if i % 3 == 0:
                store.set_metadata(f"session-{i:05}", {"user": f"user-{i % 97}"})


def _time(
    conn: http.client.HTTPConnection, headers: dict[str, str], path: str
) -> tuple[float, int]:
    start = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}")
    return elapsed, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sessions.db"
        started = time.perf_counter()
        build(path, args.sessions, args.messages)
        print(f"built {args.sessions} sessions in {time.perf_counter() - started:.1f} s")
        with SQLiteStore(path) as store:
            sock = bind("127.0.0.1", 0)
            _, port, hosts = address(sock, "127.0.0.1")
            settings = Settings(new_token(), new_token(), hosts, "c", False, str(path))
            config = uvicorn.Config(
                create_app(store, settings), log_level="warning", access_log=False, lifespan="off"
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            headers = {"Host": f"127.0.0.1:{port}", "Cookie": f"c={settings.token}"}
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            rows = []
            try:
                for label, page in [
                    (f"sessions list, first page ({args.sessions} sessions)", "/"),
                    (f"transcript, first page ({args.messages} messages)", f"/session?id={LONG}"),
                ]:
                    first, size = _time(conn, headers, page)
                    times = sorted(_time(conn, headers, page)[0] for _ in range(args.repeat))
                    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                    rows.append(
                        f"| {label} | {first * 1000:.1f} | {statistics.median(times) * 1000:.1f} "
                        f"| {p95 * 1000:.1f} | {size // 1024} |"
                    )
            finally:
                conn.close()
                server.should_exit = True
                thread.join(10)
                sock.close()
    print("| page | first request (ms) | median (ms) | p95 (ms) | size (KiB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
