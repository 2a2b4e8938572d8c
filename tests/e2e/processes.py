"""Run `twofold serve` as a real process, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 60.0  # seconds; a deadline for a broken start, not a performance bound


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOFOLD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(values)
    return env


def twofold(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "twofold.cli.main", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_twofold(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """Run `twofold ARGS` to its end; its exit status, stdout and stderr apart.

    ``timeout`` is a deadline for a broken run, not a measure of speed."""
    return subprocess.run(
        [sys.executable, "-m", "twofold.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def serving(
    args: Sequence[str], *, cwd: Path, env: dict[str, str]
) -> Iterator[tuple[str, list[str]]]:
    """Start `twofold serve ARGS --port P`, wait until /health answers, stop it after.

    Yields the base URL and a list that receives the process's output once it stopped.
    """
    port = free_port()
    process = twofold("serve", *args, "--port", str(port), cwd=cwd, env=env)
    url = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            if process.poll() is not None:
                log = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"twofold serve exited {process.returncode}:\n{log}")
            try:
                if httpx.get(f"{url}/health").status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("twofold serve did not start")
            time.sleep(0.1)
        yield url, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            output.append(process.stdout.read())
            process.stdout.close()
