"""Running projections under leases: each runs in exactly one process at a time.

Used by ``twofold worker`` and by ``twofold serve`` on a PostgreSQL read store. A process
holds a lease per projection it runs (an advisory lock whose connection also commits the
projection's batches, so a process that lost it cannot write); the others try to take free
leases every ``retry_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from twofold.adapters.postgres.lanes import LeaseLostError
from twofold.adapters.postgres.read_store import PostgresReadStore
from twofold.application.app import App
from twofold.errors import ProjectionError

__all__ = ["run_leased", "start_leased"]

log = logging.getLogger("twofold.leases")


def start_leased(
    app: App, store: PostgresReadStore, names: Sequence[str], retry_interval: float = 1.0
) -> list[asyncio.Task[None]]:
    """A task per projection that takes its lease when free and runs it while held."""
    return [
        asyncio.create_task(run_leased(app, store, name, retry_interval), name=f"lease-{name}")
        for name in names
    ]


async def run_leased(app: App, store: PostgresReadStore, name: str, retry_interval: float) -> None:
    """Take the lease on ``name`` when free, run the projection while it is held."""
    runner = app.runner(name)
    while True:
        lease = store.lease(name)
        try:
            # An advisory lock announces nothing when it is freed: looking again is the way.
            # A lease that is taken is only looked at (no connection of its own held).
            while await store.lease_taken(lease) or not await lease.try_acquire():  # noqa: ASYNC110
                await asyncio.sleep(retry_interval)
            log.info("process %d runs projection %s", os.getpid(), name)
            store.use_lane(name, lease.lane)
            # It reloads the checkpoint the previous holder committed, then runs; a failure
            # of the store is retried with backoff (status retrying) while the lease holds.
            # The app's own runner: its status is what this process reports.
            await runner.supervise(fatal=(LeaseLostError,))
            return  # the runner ended: its store was closed
        except asyncio.CancelledError:
            raise
        except ProjectionError as error:
            log.warning("projection %s: %s", name, error)
        except Exception:
            log.exception("projection %s failed; its lease is released and retried", name)
        finally:
            store.drop_lane(name)
            await lease.release()
        await asyncio.sleep(retry_interval)
