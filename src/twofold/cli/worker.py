"""``twofold worker``: run a service's projections, shared with other workers by leases.

::

    TWOFOLD_EVENT_STORE=postgresql://db/shop TWOFOLD_READ_STORE=postgresql://db/shop \\
        twofold worker                      # the reference shop's projections
    twofold worker myapp:service --projection orders

Start as many as you like, anywhere: each projection runs in exactly one of them at a time.
A worker holds a lease per projection it runs (a PostgreSQL advisory lock on a connection
of its own, which also commits that projection's batches, so a worker that lost the lock
cannot write); the others try to take free leases every ``--retry-interval`` seconds. A
worker that dies loses its leases with its connections, and another takes over within
about that interval, from the last committed checkpoint. The API processes then run with
``TWOFOLD_PROJECTIONS=off``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twofold.application.app import Service
from twofold.cli import loop
from twofold.errors import ConfigurationError
from twofold.settings import Settings

if TYPE_CHECKING:
    from twofold.adapters.postgres.read_store import PostgresReadStore

__all__ = ["DEFAULT_SERVICE", "add_worker_command", "load_service", "run_worker", "worker"]

DEFAULT_SERVICE = "twofold.examples.shop:SERVICE"
log = logging.getLogger("twofold.worker")


def add_worker_command(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "worker",
        help="run projections, shared with other workers through leases",
        description="Run a service's projections against the stores named by TWOFOLD_* "
        "(the read store must be PostgreSQL). Several workers share the projections: each "
        "runs in exactly one worker at a time, and a dead worker's are taken over.",
    )
    parser.add_argument(
        "service",
        nargs="?",
        default=None,
        help="module:attribute of a Service or an HttpApi (default: the reference shop)",
    )
    parser.add_argument(
        "--projection",
        action="append",
        dest="projections",
        metavar="NAME",
        help="run only this projection (repeat for several; default: all of them)",
    )
    parser.add_argument(
        "--retry-interval",
        type=float,
        default=1.0,
        help="seconds between attempts to take a lease another worker holds (1.0)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.set_defaults(run=worker)


def load_service(spec: str) -> Service:
    """The Service ``spec`` (module:attribute) names: a Service, an HttpApi's, or a
    function of no arguments returning either."""
    from twofold.http.serve import load_target

    target = load_target(spec)
    for _ in range(2):
        if isinstance(target, Service):
            return target
        service = getattr(target, "service", None)
        if isinstance(service, Service):
            return service
        if callable(target) and not isinstance(target, type):
            target = target()
    raise ConfigurationError(f"{spec} is neither a Service nor an HttpApi")


def worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    spec: str = args.service or DEFAULT_SERVICE
    sys.path.insert(0, os.getcwd())
    try:
        if args.retry_interval <= 0:
            raise ConfigurationError("--retry-interval must be above 0 seconds")
        service = load_service(spec)
        settings = Settings.from_env()
        loop.run(
            run_worker(
                service,
                settings,
                projections=args.projections,
                retry_interval=args.retry_interval,
                handle_signals=True,
            )
        )
    except ConfigurationError as error:
        print(f"twofold worker: {error}", file=sys.stderr)
        return 2
    return 0


async def run_worker(
    service: Service,
    settings: Settings,
    *,
    projections: Sequence[str] | None = None,
    retry_interval: float = 1.0,
    stop: asyncio.Event | None = None,
    handle_signals: bool = False,
) -> None:
    """Hold (or wait for) a lease on each projection and run those held, until ``stop``."""
    from twofold.adapters.postgres.leased import start_leased
    from twofold.bootstrap import bootstrap

    stop = stop if stop is not None else asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    app = await bootstrap(service, dataclasses.replace(settings, projections="off"))
    async with app:
        store: PostgresReadStore = app.read_store  # type: ignore[assignment]
        if not callable(getattr(store, "lease", None)):
            raise ConfigurationError(
                "twofold worker shares projections through PostgreSQL leases; set "
                "TWOFOLD_READ_STORE to postgresql://... (or run the projections in the API "
                "process with TWOFOLD_PROJECTIONS=run)"
            )
        names = list(projections) if projections else list(app.runners)
        for name in names:
            app.runner(name)  # an unknown name fails here
        log.info("worker pid %d shares projections: %s", os.getpid(), ", ".join(names))
        tasks = start_leased(app, store, names, retry_interval)
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
