"""``twofold worker``: run a service's projections, shared with other processes.

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

On a SQLite read store (one host) a worker contends for the same file lock as the
``twofold serve`` processes (``twofold.adapters.sqlite.coordination``): whichever process holds it
runs every projection, and the others take over when it dies.

With ``--source nats://...`` (or ``kafka://``, ``redis://``) the worker belongs to a read
service in another process or host: it applies what a ``twofold relay`` published, from the
broker, into ``TWOFOLD_READ_STORE`` (``TWOFOLD_EVENT_STORE`` is not used). Workers with the
same ``--group`` share the messages through the broker's consumer groups (docs/relay.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import logging.config
import os
import signal
import sys
from collections.abc import Sequence

import click

from twofold.application.app import Service
from twofold.bootstrap import bootstrap, bootstrap_bus_worker, check_shared_projections
from twofold.cli import loop
from twofold.cli.serve import LOG_LEVELS
from twofold.errors import ConfigurationError, TwofoldError
from twofold.logs import log_config
from twofold.settings import Settings

__all__ = [
    "DEFAULT_SERVICE",
    "load_service",
    "run_bus_worker",
    "run_worker",
    "run_worker_command",
    "worker",
]

DEFAULT_SERVICE = "twofold.examples.shop:SERVICE"
log = logging.getLogger("twofold.worker")


@click.command("worker", short_help="Run projections, shared with other processes.")
@click.argument("service", required=False)
@click.option(
    "--projection",
    "projections",
    multiple=True,
    metavar="NAME",
    help="Run only this projection (repeat for several; default: all; PostgreSQL only).",
)
@click.option(
    "--retry-interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between attempts to take a lease or lock another process holds.",
)
@click.option(
    "--source",
    metavar="URL",
    help="Apply the events a relay published to this broker (nats://, kafka://, redis://) "
    "instead of reading the event store.",
)
@click.option(
    "--group",
    help="With --source: the consumer group workers share the messages in (default: the "
    "URL's group option, else the service's name); each projection reads as "
    "<group>-<projection>.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def worker(
    service: str | None,
    projections: tuple[str, ...],
    retry_interval: float,
    source: str | None,
    group: str | None,
    log_level: str,
) -> int:
    """Run a service's projections against the stores named by TWOFOLD_*.

    SERVICE is module:attribute of a Service or an HttpApi (default: the reference shop).
    Several workers (and twofold serve processes) share the projections: each runs in
    exactly one process at a time, and a dead process's are taken over. On PostgreSQL by a
    lease per projection; on a SQLite file (one host) by the file's lock, held by one
    process for every projection. With --source, the projections are fed from a broker
    instead (a read service; docs/relay.md).
    """
    return run_worker_command(
        service,
        projections=list(projections) or None,
        retry_interval=retry_interval,
        source=source,
        group=group,
        log_level=log_level,
    )


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


def run_worker_command(
    service_spec: str | None,
    *,
    projections: list[str] | None,
    retry_interval: float,
    source: str | None = None,
    group: str | None = None,
    log_level: str,
) -> int:
    """Run the worker until SIGINT or SIGTERM; the exit status (2: refused; 1: a bus
    worker's runner stopped)."""
    spec: str = service_spec or DEFAULT_SERVICE
    sys.path.insert(0, os.getcwd())
    try:
        settings = Settings.from_env()
        logging.config.dictConfig(log_config(settings.log_format, log_level))
        if retry_interval <= 0:
            raise ConfigurationError("--retry-interval must be above 0 seconds")
        service = load_service(spec)
        if group is not None and source is None:
            raise ConfigurationError("--group goes with --source (a broker's consumer group)")
        if source is not None:
            if projections:
                raise ConfigurationError(
                    "--projection cannot choose projections with --source: each worker runs "
                    "every projection and the consumer groups share the messages"
                )
            loop.run(
                run_bus_worker(service, settings, source=source, group=group, handle_signals=True)
            )
            return 0
        loop.run(
            run_worker(
                service,
                settings,
                projections=projections,
                retry_interval=retry_interval,
                handle_signals=True,
            )
        )
    except ConfigurationError as error:
        print(f"twofold worker: {error}", file=sys.stderr)
        return 2
    except TwofoldError as error:  # a bus worker's runner stopped (a gap, say)
        print(f"twofold worker: {error}", file=sys.stderr)
        return 1
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
    """Share the projections with the other processes on the same views until ``stop``.

    The App is built and coordinated exactly as in ``twofold serve`` (``bootstrap``): on
    PostgreSQL it holds (or waits for) a lease on each projection and runs those held; on a
    SQLite file it contends for the file's lock (one host) and runs every projection while
    it holds it. Views no other process can share are refused.
    """
    check_shared_projections(settings, projections)
    stop = stop if stop is not None else asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    app = await bootstrap(
        service, dataclasses.replace(settings, projections="run"), retry_interval=retry_interval
    )
    try:
        names = list(projections) if projections else None
        await app.start(projections=names)
        log.info(
            "worker pid %d shares projections: %s", os.getpid(), ", ".join(names or app.runners)
        )
        await stop.wait()
    finally:
        await app.close()


async def run_bus_worker(
    service: Service,
    settings: Settings,
    *,
    source: str,
    group: str | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = False,
) -> None:
    """Apply ``service``'s projections from the broker at ``source`` until ``stop``; a
    runner that stops (a gap, a projection's failure policy) ends it with its error."""
    stop = stop if stop is not None else asyncio.Event()
    if handle_signals:
        running = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(signum, stop.set)
    bus_worker = await bootstrap_bus_worker(service, settings, source=source, group=group)
    try:
        await bus_worker.start()
        log.info(
            "worker pid %d applies projections from %s: %s",
            os.getpid(),
            source.split("?", 1)[0],
            ", ".join(bus_worker.runners),
        )
        work = asyncio.create_task(bus_worker.run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a runner's error (a gap, say) is raised here
    finally:
        await bus_worker.close()
