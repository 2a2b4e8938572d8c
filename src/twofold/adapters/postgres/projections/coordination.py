"""Coordination on PostgreSQL: a lease per projection, and checkpoints followed by NOTIFY.

Every process on a PostgreSQL read store (``twofold serve`` workers, ``twofold worker``, a
library user's ``bootstrap(...)``) takes part the same way, through the App's
``LeaseCoordination``: it follows every checkpoint by NOTIFY, so ``min_position`` holds in
any process, and, when it may run projections, it contends for each one's lease. A process
holds a lease per projection it runs (an advisory lock whose connection also commits the
projection's batches, so a process that lost it cannot write); the others try to take free
leases every ``retry_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Collection

from twofold.adapters.postgres.projections.lanes import LeaseLostError
from twofold.adapters.postgres.read_store import PostgresReadStore
from twofold.application.app import App
from twofold.errors import ProjectionError

__all__ = ["LeaseCoordination"]

log = logging.getLogger("twofold.leases")


class LeaseCoordination:
    """One process's part: follow every checkpoint; run the projections whose lease it holds."""

    shared = True

    def __init__(self, store: PostgresReadStore, *, retry_interval: float = 1.0) -> None:
        self.store = store
        self.retry_interval = retry_interval
        self._held: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, app: App, *, run: Collection[str]) -> None:
        await self.store.watch_checkpoints(app.positions.advance)
        for name in run:
            task = asyncio.create_task(self._run_leased(app, name), name=f"lease-{name}")
            self._tasks.append(task)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def runs(self, projection: str) -> bool:
        return projection in self._held

    async def attended(self, projection: str) -> bool:
        return projection in self._held or await self.store.is_leased(projection)

    async def _run_leased(self, app: App, name: str) -> None:
        """Take the lease on ``name`` when free, run the projection while it is held."""
        store = self.store
        runner = app.runner(name)
        while True:
            lease = store.lease(name)
            try:
                # An advisory lock announces nothing when it is freed: looking again is the
                # way. A lease that is taken is only looked at (no connection of its own).
                while await store.lease_taken(lease) or not await lease.try_acquire():  # noqa: ASYNC110
                    await asyncio.sleep(self.retry_interval)
                log.info("process %d runs projection %s", os.getpid(), name)
                store.use_lane(name, lease.lane)
                self._held.add(name)
                # It reloads the checkpoint the previous holder committed, then runs; a
                # failure of the store is retried with backoff (status retrying) while the
                # lease holds. The app's own runner: its status is what this process reports.
                await runner.supervise(fatal=(LeaseLostError,))
                return  # the runner ended: its store was closed
            except asyncio.CancelledError:
                raise
            except ProjectionError as error:
                log.warning("projection %s: %s", name, error)
            except Exception:
                log.exception("projection %s failed; its lease is released and retried", name)
            finally:
                self._held.discard(name)
                store.drop_lane(name)
                await lease.release()
            await asyncio.sleep(self.retry_interval)
