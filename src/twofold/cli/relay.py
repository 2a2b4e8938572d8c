"""``twofold relay``: publish the event store's log to the ``TWOFOLD_BUS`` destinations.

::

    TWOFOLD_EVENT_STORE=postgresql://db/shop TWOFOLD_BUS=nats://broker:4222 twofold relay

Start one or more, anywhere that reaches the event store: for each destination one of them
publishes at a time (it holds the destination's lease: a file lock next to a SQLite event
store, a PostgreSQL advisory lock), the others wait and take over within
``--retry-interval`` seconds when it dies, from the checkpoint it stored. ``twofold serve``
runs the same relays with ``TWOFOLD_RELAY=run``. Everything is built by ``bootstrap``.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
import signal
import sys

import click

from twofold.bootstrap import bootstrap_relay
from twofold.cli import loop
from twofold.cli.serve import LOG_LEVELS
from twofold.errors import ConfigurationError
from twofold.logs import log_config
from twofold.settings import Settings

__all__ = ["relay", "run_relay"]

log = logging.getLogger("twofold.relay")


@click.command("relay", short_help="Publish the event log to the brokers of TWOFOLD_BUS.")
@click.option(
    "--retry-interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between attempts to take a lease another process holds.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def relay(retry_interval: float, log_level: str) -> int:
    """Publish every event of TWOFOLD_EVENT_STORE to each broker named by TWOFOLD_BUS
    (nats://, kafka://, redis://; comma-separated), in order, from a checkpoint per
    destination. One process per destination publishes at a time; the others wait and take
    over when it dies.
    """
    try:
        settings = Settings.from_env()
        logging.config.dictConfig(log_config(settings.log_format, log_level))
        if retry_interval <= 0:
            raise ConfigurationError("--retry-interval must be above 0 seconds")
        loop.run(run_relay(settings, retry_interval=retry_interval, handle_signals=True))
    except ConfigurationError as error:
        print(f"twofold relay: {error}".replace("\n", "\ntwofold relay: "), file=sys.stderr)
        return 2
    return 0


async def run_relay(
    settings: Settings,
    *,
    retry_interval: float = 1.0,
    stop: asyncio.Event | None = None,
    handle_signals: bool = False,
) -> None:
    """Relay to every destination whose lease this process holds, until ``stop``."""
    host = await bootstrap_relay(settings, retry_interval=retry_interval)
    stop = stop if stop is not None else asyncio.Event()
    if handle_signals:
        running = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(signum, stop.set)
    try:
        await host.start()
        log.info("relay pid %d ready: destinations %s", os.getpid(), ", ".join(host.destinations))
        await stop.wait()
    finally:
        await host.close()
