"""Waiting for a projection to reach a position: read-your-writes without sleep loops.

Runners call ``advance`` after each commit; queries ``wait``. A waiter is a future resolved
by the runner that passed its position, so a query wakes the moment its view is ready.
A projection applied inline (in the append's own transaction, single-database mode) is
never behind a committed append: ``mark_inline`` it and no query waits for it.
Runners in other processes feed ``advance`` through a watcher of the read store's
checkpoints (LISTEN/NOTIFY on PostgreSQL, a change detector on SQLite).

A projection whose views cannot be trusted (``refuse``: they belong to another event store)
answers no query: the QueryBus ``check``s before it reads, and ``check`` raises its error
until ``accept``. ``wait`` itself only waits (coordinators wait on positions too).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from twofold.errors import ConsistencyTimeoutError, ProjectionError

if TYPE_CHECKING:
    from twofold.application.ports import EventStore

__all__ = ["PositionTracker", "lag_behind"]


class PositionTracker:
    """The latest committed position of each projection, and who waits for which."""

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[int, int, asyncio.Future[None]]]] = {}
        self._counter = itertools.count()
        self._inline: set[str] = set()
        self._listeners: list[Callable[[str, int], None]] = []
        self._refused: dict[str, ProjectionError] = {}

    def mark_inline(self, projection: str) -> None:
        """``projection`` commits with every append: waiting for it returns at once."""
        self._inline.add(projection)

    def is_inline(self, projection: str) -> bool:
        return projection in self._inline

    def refuse(self, projection: str, error: ProjectionError) -> None:
        """Queries of ``projection`` fail with ``error`` until ``accept``."""
        self._refused[projection] = error

    def accept(self, projection: str) -> None:
        """``projection``'s views may be read again."""
        self._refused.pop(projection, None)

    def check(self, projections: Sequence[str]) -> None:
        """Raise the error of the first refused projection among ``projections``."""
        if self._refused:
            for name in projections:
                error = self._refused.get(name)
                if error is not None:
                    raise error

    def position(self, projection: str) -> int:
        return self._positions.get(projection, 0)

    def advance(self, projection: str, position: int) -> None:
        """Record that ``projection`` committed up to ``position``; wake who waited for it."""
        if position <= self._positions.get(projection, -1):
            return
        self._positions[projection] = position
        self._wake(projection, position)

    def listen(self, callback: Callable[[str, int], None]) -> Callable[[], None]:
        """Call ``callback(projection, position)`` whenever a position moves; returns the
        function that stops it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _wake(self, projection: str, position: int) -> None:
        for listener in self._listeners:
            listener(projection, position)
        waiters = self._waiters.get(projection)
        while waiters and waiters[0][0] <= position:
            _, _, future = heapq.heappop(waiters)
            if not future.done():
                future.set_result(None)

    def reset(self, projection: str, position: int) -> None:
        """Set the position outright (after a reset or a switch to a rebuilt copy)."""
        self._positions[projection] = position
        self._wake(projection, position)

    async def wait(self, projections: Sequence[str], position: int, timeout: float) -> bool:
        """Return once every projection reached ``position``; ConsistencyTimeoutError after
        ``timeout`` seconds, naming the projection that lags and by how much. True when
        some projection was behind (it waited), False when all were there already."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waited = False
        for name in projections:
            if name in self._inline or self._positions.get(name, 0) >= position:
                continue
            waited = True
            future: asyncio.Future[None] = loop.create_future()
            heapq.heappush(
                self._waiters.setdefault(name, []), (position, next(self._counter), future)
            )
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(future, remaining)
            except TimeoutError:
                future.cancel()
                self._drop_done(name)
                raise ConsistencyTimeoutError(
                    name, position, self._positions.get(name, 0), timeout
                ) from None
        return waited

    def _drop_done(self, projection: str) -> None:
        waiters = self._waiters.get(projection)
        if waiters:
            kept = [w for w in waiters if not w[2].done()]
            heapq.heapify(kept)
            self._waiters[projection] = kept


async def lag_behind(
    event_store: EventStore, checkpoint: int, head: int, now: datetime
) -> tuple[int, float]:
    """How far a reader at ``checkpoint`` is behind ``head``: the events after it, and
    how long the oldest of them has waited at ``now`` (seed 004's sync delay; 0 when
    caught up). One read of the log, only when there is lag."""
    events = max(0, head - checkpoint)
    if not events:
        return 0, 0.0
    oldest = await event_store.read_all(after=checkpoint, limit=1)
    if not oldest:
        return events, 0.0
    recorded = oldest[0].recorded_at
    if recorded.tzinfo is None:
        recorded = recorded.replace(tzinfo=UTC)
    return events, max(0.0, (now - recorded).total_seconds())
