"""The runner of a projection applied inline (single-database mode, DESIGN 4).

An inline projection is applied by the event store inside each append's transaction, so
its runner never runs: ``run`` returns at once, wherever it is called (``App.start``, a
coordinator, a worker). It stays for what only a runner does: rebuilds (blue/green). A
rebuild fills the new copy as usual; its final switch goes through the
event store (``switch``), which holds back every inline append while it applies the last
events to the new copy and makes it active, so no event is missed or applied twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from twofold.application.metrics import Metrics
from twofold.application.ports import EventStore
from twofold.application.positions import PositionTracker
from twofold.application.projections import Projection
from twofold.application.runner import ProjectionRunner
from twofold.application.tracing import Tracer
from twofold.application.views import ReadStore
from twofold.codec import Codec

__all__ = ["InlineRunner", "SwitchInline"]

SwitchInline = Callable[[str, int], Awaitable[int]]
"""``switch(projection, generation)``: make a rebuilt copy active against inline appends."""


class InlineRunner(ProjectionRunner):
    """A ProjectionRunner that never runs on its own; rebuilds switch through ``switch``."""

    def __init__(
        self,
        projection: Projection,
        *,
        event_store: EventStore,
        read_store: ReadStore,
        codec: Codec,
        switch: SwitchInline,
        positions: PositionTracker | None = None,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        views = cast(ReadStore, _SwitchThrough(read_store, switch))
        super().__init__(
            projection,
            event_store=event_store,
            read_store=views,
            codec=codec,
            positions=positions,
            metrics=metrics,
            tracer=tracer,
        )

    async def run(self) -> None:
        """Nothing to run: every append applies this projection in its own transaction."""
        return


class _SwitchThrough:
    """The read store, except that ``switch`` goes through the event store's writer."""

    def __init__(self, inner: ReadStore, switch: SwitchInline) -> None:
        self._inner = inner
        self._switch = switch

    async def switch(self, projection: str, generation: int) -> None:
        await self._switch(projection, generation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
