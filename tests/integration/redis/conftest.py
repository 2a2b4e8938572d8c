"""Redis fixtures: the machine's server with a key namespace per test, or a server of
the test's own.

The shared server is ``TWOFOLD_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/0). When
it cannot be reached the tests are skipped, except under ``CI=true``, where a missing
server is a failure, not a reason to pass.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def _unreachable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TWOFOLD_TEST_REDIS_URL", DEFAULT_URL)
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=5) as client:
            client.ping()
    except redis.RedisError as exc:
        _unreachable(f"Redis at {url} is unreachable ({exc}); set TWOFOLD_TEST_REDIS_URL")
    return url


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A key namespace of the test's own; its keys are deleted afterwards."""
    name = f"test{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with redis.Redis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=f"{{{name}:*", count=1000))
            if keys:
                client.delete(*keys)


@dataclass
class OwnRedis:
    """A redis-server process the test started, on a free port, keeping nothing on disk."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *command: str) -> None:
        """Run a command with redis-cli."""
        binary = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        subprocess.run([binary, "-p", str(self.port), *command], check=True, capture_output=True)

    def freeze(self) -> None:
        """Stop the server process (SIGSTOP): connections stay open, nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def start(self) -> None:
        """Start (again) on the same port; return once it answers."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        with redis.Redis(port=self.port, socket_connect_timeout=1) as client:
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)  # polling a starting server, with a deadline


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None and not os.path.exists("/usr/bin/redis-server"):
        _unreachable("redis-server is not installed")
    server = OwnRedis(_free_port(), None)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.kill()


# PostgreSQL read stores behind the cache use the PostgreSQL suite's fixtures.
from tests.integration.postgres.conftest import pg_schema, postgres_url  # noqa: E402

__all__ = ["OwnRedis", "pg_schema", "postgres_url"]
