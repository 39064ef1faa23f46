"""The PostgreSQL and Redis servers the tests run against, and per-test isolation on them.

``AGENTSESSION_TEST_POSTGRES`` / ``AGENTSESSION_TEST_REDIS`` /
``AGENTSESSION_TEST_REDIS_CLUSTER`` override the defaults (the local servers at
127.0.0.1, the Redis Cluster's nodes on ports 7000-7002). A server that does not
answer is started with ``.ci/services`` (which starts what this machine has installed);
if it still does not answer, the test fails where ``AGENTSESSION_REQUIRE_SERVICES`` is
set (as in CI) and is skipped, with the reason, elsewhere.

Each test gets its own PostgreSQL schema and its own Redis key prefix, both removed
afterwards, so tests (and test runs) never see each other's sessions.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

POSTGRES_DSN = os.environ.get(
    "AGENTSESSION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AGENTSESSION_TEST_REDIS", "redis://127.0.0.1:6379/0")
REDIS_CLUSTER_URL = os.environ.get(
    "AGENTSESSION_TEST_REDIS_CLUSTER", "redis://127.0.0.1:7000/?cluster=true"
)

_SERVICES_SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "services"


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ) as sock:
            if "cluster=true" not in parts.query:
                return True
            # A cluster node answers once the cluster covers every slot.
            sock.sendall(b"CLUSTER INFO\r\n")
            sock.settimeout(2)
            return b"cluster_state:ok" in sock.recv(4096)
    except OSError:
        return False


@functools.cache
def _available(name: str, url: str, default_port: int) -> str | None:
    """``None`` if the server answers (after starting it if need be), else why not."""
    if _answers(url, default_port):
        return None
    if _SERVICES_SCRIPT.exists():
        subprocess.run(["bash", str(_SERVICES_SCRIPT)], check=False, capture_output=True)
        if _answers(url, default_port):
            return None
    return f"no {name} server answers at {url} (set AGENTSESSION_TEST_{name.upper()} to one)"


def _need(name: str, url: str, default_port: int) -> str:
    reason = _available(name, url, default_port)
    if reason is not None:
        if os.environ.get("AGENTSESSION_REQUIRE_SERVICES"):
            pytest.fail(f"{reason}; AGENTSESSION_REQUIRE_SERVICES is set, so this fails")
        pytest.skip(reason)
    return url


def postgres_dsn() -> str:
    """The test PostgreSQL DSN; skips or fails the test if no server answers."""
    return _need("postgres", POSTGRES_DSN, 5432)


def redis_url() -> str:
    """The test Redis URL; skips or fails the test if no server answers."""
    return _need("redis", REDIS_URL, 6379)


def redis_cluster_url() -> str:
    """The test Redis Cluster URL; skips or fails the test if the cluster is not up."""
    return _need("redis_cluster", REDIS_CLUSTER_URL, 7000)


def unique_name(prefix: str) -> str:
    """A name no other test (or test run) uses: a schema or a key prefix."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_postgres_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def drop_redis_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key under ``prefix`` (on every node, for a cluster ``url``)."""
    from agentsession.stores.redis.core import client_from_url

    client = client_from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for key in keys:  # one by one: a cluster's keys live in many slots
            client.delete(key)
    finally:
        client.close()
