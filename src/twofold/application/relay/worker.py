"""A read service's worker: a service's projections fed from a bus into its own read store.

``twofold worker --source nats://...`` runs one; ``bootstrap.bootstrap_bus_worker`` builds
it. Each projection has a ``BusProjectionRunner`` with a source of its own (the consumer
group ``<group>-<projection>``, so several workers share each projection's messages), and
all of them advance one ``PositionTracker``: ``queries.ask(..., min_position=p)`` in this
process waits until the projections it reads applied position ``p`` (read-your-writes
across services: ``p`` is the position the write service answered a command with).

A runner that fails on the broker retries with backoff by itself; one that stops (a gap,
a projection stopped by its failure policy) stops the worker with its error, since its
views would silently fall behind otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twofold.application.positions import PositionTracker
from twofold.application.queries import DEFAULT_TIMEOUT, QueryBus
from twofold.application.relay.remote import BusProjectionRunner
from twofold.application.views import ReadStore
from twofold.domain.messages import Query

__all__ = ["BusWorker"]

R = TypeVar("R")


class BusWorker:
    """The bus-fed runners of one service, over one read store."""

    def __init__(
        self,
        *,
        runners: Sequence[BusProjectionRunner],
        read_store: ReadStore,
        positions: PositionTracker,
        queries: QueryBus,
    ) -> None:
        self.runners = {runner.name: runner for runner in runners}
        self.read_store = read_store
        self.positions = positions
        self.queries = queries
        self._closers: list[Callable[[], Any]] = []

    def on_close(self, closer: Callable[[], Any]) -> None:
        self._closers.append(closer)

    async def start(self) -> None:
        """Prepare each projection's views and bookkeeping (checkpoints loaded)."""
        for runner in self.runners.values():
            await runner.start()

    async def run(self) -> None:
        """Run every runner until cancelled; raise the first one's error if one stops."""
        await self.start()
        tasks = [
            asyncio.create_task(runner.run(), name=f"bus-{name}")
            for name, runner in self.runners.items()
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def ask(
        self, query: Query[R], *, min_position: int | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> R:
        return await self.queries.ask(query, min_position=min_position, timeout=timeout)

    async def close(self) -> None:
        for closer in reversed(self._closers):
            outcome = closer()
            if asyncio.iscoroutine(outcome):
                await outcome
        self._closers.clear()
