"""Worker processes for ``twofold serve --workers N``, each with its own listening socket.

Each worker binds the address with ``SO_REUSEPORT``, so the kernel spreads new connections
evenly over the workers. With one socket shared by all of them (uvicorn's own ``--workers``)
whichever worker wakes first accepts a burst of connections, and under keep-alive one worker
can end up serving nearly all of them while the others idle.

The parent only supervises: it restarts a worker that dies (the projections move to another
worker meanwhile, see ``twofold.adapters.sqlite.coordination``), stops when workers keep
dying at start, and on SIGINT or SIGTERM asks every worker to finish its requests and waits
for them.

Metrics: the parent makes a fresh directory for each server run and hands it to the workers
as ``PROMETHEUS_MULTIPROC_DIR`` (overriding one set outside), so each worker writes its
figures there and ``GET /metrics``, answered by any worker, adds them all up
(prometheus_client's multiprocess mode). When a worker dies, its gauges are dropped (its
counters still count); the directory is removed when the server stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

__all__ = ["MULTIPROC_DIR", "bind", "run_workers", "shared_metrics"]

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("twofold.serve")

QUICK_DEATH = 5.0  # seconds: a worker dying sooner than this after starting failed to start
MAX_QUICK_DEATHS = 3
STOP_GRACE = 30.0


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve_worker(host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process: its own socket on the shared address, one uvicorn server."""
    import uvicorn

    # Signals reach the workers through the parent only (a terminal's Ctrl+C too), so each
    # gets exactly one request to stop; and a worker must not outlive its parent.
    os.setpgrp()
    _stop_with_parent()
    sock = bind(host, port, reuse_port=True)
    sock.listen(2048)
    config = uvicorn.Config("twofold.http.serve:app_factory", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _stop_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def shared_metrics() -> Iterator[str]:
    """A fresh directory for the workers' metrics, in ``PROMETHEUS_MULTIPROC_DIR`` for the
    processes started meanwhile; removed (and the variable restored) at the end."""
    path = tempfile.mkdtemp(prefix="twofold-metrics-")
    previous = os.environ.get(MULTIPROC_DIR)
    os.environ[MULTIPROC_DIR] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = previous
        shutil.rmtree(path, ignore_errors=True)


def _forget_worker(pid: int | None, metrics: str) -> None:
    """Drop a dead worker's live gauges (prometheus_client's bookkeeping)."""
    if pid is None:
        return
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, metrics)  # type: ignore[no-untyped-call]


def run_workers(workers: int, host: str, port: int, options: dict[str, Any]) -> int:
    """Run and supervise ``workers`` processes until a stop signal; the exit status."""
    with shared_metrics() as metrics:
        return _supervise(workers, host, port, options, metrics)


def _supervise(workers: int, host: str, port: int, options: dict[str, Any], metrics: str) -> int:
    # Fail early, and once, if the address is taken. Without SO_REUSEPORT on this probe, a
    # server already listening there (even another `twofold serve`) makes it fail, rather
    # than the workers silently sharing the port with it.
    bind(host, port, reuse_port=False).close()
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start() -> tuple[BaseProcess, float]:
        process = context.Process(
            target=serve_worker, args=(host, port, options), name="twofold-worker"
        )
        process.start()
        return process, time.monotonic()

    running = [start() for _ in range(workers)]
    quick_deaths = 0
    status = 0
    try:
        while not stopping:
            wait([p.sentinel for p, _ in running], timeout=0.5)
            for index, (process, started) in enumerate(running):
                if process.is_alive() or stopping:
                    continue
                _forget_worker(process.pid, metrics)
                quick = time.monotonic() - started < QUICK_DEATH
                quick_deaths = quick_deaths + 1 if quick else 0
                if quick_deaths >= MAX_QUICK_DEATHS:
                    print(
                        "twofold serve: workers keep failing at start; stopping "
                        "(see the errors above)",
                        file=sys.stderr,
                    )
                    stopping, status = True, 1
                    break
                log.warning(
                    "worker %s exited (%s); starting another", process.pid, process.exitcode
                )
                running[index] = start()
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes its requests, then exits
        deadline = time.monotonic() + STOP_GRACE
        for process, _ in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
