"""The QueryBus: one handler per query type, answering from the views.

A handler is an async function ``(query, views) -> answer``, registered with the names of
the projections whose views it reads::

    async def get_order(query: GetOrder, views: ViewReader) -> OrderView | None: ...

    bus.register(GetOrder, get_order, reads=("orders",))
    order = await bus.ask(GetOrder(order_id="o-1"), min_position=result.position)

With ``min_position`` the bus first waits until every projection the query reads has
committed that position (woken by the runners), so a client reads its own writes.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from twofold.application.positions import PositionTracker
from twofold.application.views import ViewReader
from twofold.domain.messages import Query
from twofold.errors import ConfigurationError, HandlerNotFoundError, ValidationError

__all__ = ["QueryBus", "QueryHandler"]

R = TypeVar("R")
QueryHandler = Callable[[Any, ViewReader], Awaitable[Any]]

DEFAULT_TIMEOUT = 5.0


class QueryBus:
    """Routes each query to its handler, after waiting for ``min_position`` if asked."""

    def __init__(self, views: ViewReader, positions: PositionTracker) -> None:
        self.views = views
        self.positions = positions
        self._routes: dict[type[Query[Any]], tuple[QueryHandler, tuple[str, ...]]] = {}

    def register(
        self,
        query_type: type[Query[R]],
        handler: Callable[[Any, ViewReader], Awaitable[R]],
        *,
        reads: Sequence[str],
    ) -> None:
        if query_type in self._routes:
            raise ConfigurationError(
                f"{query_type.__name__} has a handler already; one query, one handler"
            )
        if isinstance(reads, str) or not reads:
            raise ConfigurationError(
                f"register {query_type.__name__} with reads=(projection names...) it reads"
            )
        self._routes[query_type] = (handler, tuple(reads))

    def reads(self, query_type: type[Query[Any]]) -> tuple[str, ...]:
        """The projections a query type reads."""
        route = self._routes.get(query_type)
        if route is None:
            raise HandlerNotFoundError(query_type.__name__)
        return route[1]

    @property
    def query_types(self) -> tuple[type[Query[Any]], ...]:
        return tuple(self._routes)

    async def ask(
        self,
        query: Query[R],
        *,
        min_position: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> R:
        """Answer the query; with ``min_position``, from views at least that fresh.

        Raises ConsistencyTimeoutError when a view is still behind after ``timeout`` seconds.
        """
        route = self._routes.get(type(query))
        if route is None:
            raise HandlerNotFoundError(type(query).__name__)
        handler, reads = route
        query.validate()
        if min_position is not None:
            if min_position < 0:
                raise ValidationError({"min_position": "must be 0 or more"})
            if not (timeout >= 0 and math.isfinite(timeout)):
                raise ValidationError({"timeout": "must be a finite number of seconds >= 0"})
            await self.positions.wait(reads, min_position, timeout)
        answer: R = await handler(query, self.views)
        return answer
