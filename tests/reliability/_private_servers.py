"""Private PostgreSQL and Redis servers that a test may restart, on free loopback ports.

The shared servers of ``tests/services.py`` are used by other tests (and other people)
at the same time, so they are never restarted: a restart test starts its own server
here, in a temporary directory, and stops it (and removes the directory) afterwards.
PostgreSQL runs as the ``postgres`` user when the tests run as root (it refuses root).
A machine without the server binaries skips these tests with the reason, or fails them
where ``AGENTSESSION_REQUIRE_SERVICES`` is set (as in CI).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def _missing(reason: str) -> None:
    if os.environ.get("AGENTSESSION_REQUIRE_SERVICES"):
        pytest.fail(f"{reason}; AGENTSESSION_REQUIRE_SERVICES is set, so this fails")
    pytest.skip(reason)


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb, trust auth) on ``127.0.0.1:port``."""

    def __init__(self, bindir: Path, root: Path, user: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.user = user
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=timeout,
            user=self.user,
        )

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m <mode>`` (``fast``: clients are disconnected, the server
        shuts down cleanly; ``immediate``: every process quits at once, and the restart
        recovers from the WAL, as after a crash); returns once it accepts connections."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-m",
            mode,
            "restart",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)), None
    )
    if found is None:
        _missing("no PostgreSQL server binaries (pg_ctl, initdb) are installed")
    bindir = Path(os.path.realpath(str(found))).parent
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root, and there is no postgres user to run PostgreSQL as")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="agentsession-pg-"))
    if user is not None:
        shutil.chown(root, user)
    server = PrivatePostgres(bindir, root, user)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


class PrivateRedis:
    """A ``redis-server`` of its own on ``127.0.0.1:port`` with ``appendonly yes`` and
    ``appendfsync always``: every write it acknowledged is on disk."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.root / "log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not _answers(self.port):
            assert self.proc.poll() is None, f"redis-server exited ({self.proc.returncode})"
            assert time.monotonic() < deadline, "redis-server did not start within 30 s"
            time.sleep(0.01)

    def restart(self, mode: str) -> None:
        """``shutdown`` (SHUTDOWN: the server syncs its AOF and exits) or ``kill``
        (SIGKILL); then start it again on the same port and data; returns once it
        listens (it may still be loading its data: clients get ``StoreBusy`` then)."""
        assert self.proc is not None
        if mode == "shutdown":
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True, timeout=30
            )
        else:
            self.proc.kill()
        self.proc.wait(30)
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        _missing("redis-server and redis-cli are not installed")
    root = Path(tempfile.mkdtemp(prefix="agentsession-redis-"))
    server = PrivateRedis(str(binary), root)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
