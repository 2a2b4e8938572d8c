"""The QueryBus: one handler per query type, answering from the views.

A handler is an async function ``(query, views) -> answer``, registered with the names of
the projections whose views it reads::

    async def get_order(query: GetOrder, views: ViewReader) -> OrderView | None: ...

    bus.register(GetOrder, get_order, reads=("orders",))
    order = await bus.ask(GetOrder(order_id="o-1"), min_position=result.position)

With ``min_position`` the bus first waits until every projection the query reads has
committed that position (woken by the runners), so a client reads its own writes. A
position the log does not have yet fails with PositionBeyondHeadError once the wait is
over (the head is read then, never on the way of a query that need not wait), and a view
that does not belong to the event store (ForeignViewsError) answers no query at all.

A query may also have a JSON handler, ``(query, views) -> bytes | None``, answering with
the answer's JSON as it is stored: a view document read with ``views.get_json``, unchanged.
The HTTP API sends those bytes as they are (``ask_json``), with no decoding and encoding in
between (Marten calls this JSON streaming). It must answer exactly what the typed handler
answers, encoded; test the two against each other.

    bus.register(GetOrder, get_order, reads=("orders",), json=get_order_json)
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from twofold.application.metrics import HistogramChild, Metrics, NoMetrics
from twofold.application.positions import PositionTracker
from twofold.application.tracing import NoTracer, Span, Tracer
from twofold.application.views import ViewReader
from twofold.domain.messages import Query
from twofold.errors import (
    ConfigurationError,
    ConsistencyTimeoutError,
    HandlerNotFoundError,
    PositionBeyondHeadError,
    ValidationError,
)

__all__ = ["JsonHandler", "QueryBus", "QueryHandler"]

R = TypeVar("R")
QueryHandler = Callable[[Any, ViewReader], Awaitable[Any]]
JsonHandler = Callable[[Any, ViewReader], Awaitable[bytes | None]]

DEFAULT_TIMEOUT = 5.0


class QueryBus:
    """Routes each query to its handler, after waiting for ``min_position`` if asked."""

    def __init__(
        self,
        views: ViewReader,
        positions: PositionTracker,
        *,
        head: Callable[[], Awaitable[int]] | None = None,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.views = views
        self.positions = positions
        self.head = head
        """The log's head (``EventStore.head_position``), to tell a position that does not
        exist yet from a view that lags."""
        self._routes: dict[type[Query[Any]], tuple[QueryHandler, tuple[str, ...]]] = {}
        self._json: dict[type[Query[Any]], JsonHandler] = {}
        self._tracer = tracer if tracer is not None else NoTracer()
        metrics = metrics if metrics is not None else NoMetrics()
        labels = ("query",)
        self._failed = metrics.counter(
            "twofold_query_errors_total",
            "Queries that failed, by query type and error type.",
            labels=("query", "error"),
        )
        self._duration = metrics.histogram(
            "twofold_query_duration_seconds",
            "Time to answer a query (a min_position wait included), by query type; its _count "
            "counts the queries asked, errors included.",
            labels=labels,
        )
        self._waits = metrics.counter(
            "twofold_query_position_waits_total",
            "Queries that waited for a view to reach their min_position, by query type.",
            labels=labels,
        )
        self._wait_duration = metrics.histogram(
            "twofold_query_position_wait_seconds",
            "Time queries waited for their min_position (those that waited), by query type.",
            labels=labels,
        )
        self._timeouts = metrics.counter(
            "twofold_query_position_timeouts_total",
            "Queries whose view was still behind their min_position at the timeout.",
            labels=labels,
        )
        self._children: dict[type, tuple[HistogramChild, str]] = {}

    def register(
        self,
        query_type: type[Query[R]],
        handler: Callable[[Any, ViewReader], Awaitable[R]],
        *,
        reads: Sequence[str],
        json: JsonHandler | None = None,
    ) -> None:
        if query_type in self._routes:
            raise ConfigurationError(
                f"{query_type.__name__} has a handler already; one query, one handler"
            )
        if isinstance(reads, str) or not reads:
            raise ConfigurationError(
                f"register {query_type.__name__} with reads=(projection names...) it reads"
            )
        if json is not None and not callable(json):
            raise ConfigurationError(
                f"json= for {query_type.__name__} must be an async function (query, views)"
                " returning the answer's JSON as bytes, or None"
            )
        self._routes[query_type] = (handler, tuple(reads))
        if json is not None:
            self._json[query_type] = json

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

        duration, name = self._for(type(query))
        started = time.perf_counter()
        try:
            if self._tracer.enabled:
                with self._span(name):
                    handler = await self._ready(query, min_position, timeout)
                    traced: R = await handler(query, self.views)
                    return traced
            handler = await self._ready(query, min_position, timeout)
            answer: R = await handler(query, self.views)
            return answer
        except Exception as error:
            self._failed.labels(name, type(error).__name__).inc()
            raise
        finally:
            duration.observe(time.perf_counter() - started)

    def _for(self, query_type: type) -> tuple[HistogramChild, str]:
        found = self._children.get(query_type)
        if found is None:
            name = query_type.__name__
            found = (self._duration.labels(name), name)
            self._children[query_type] = found
        return found

    def _span(self, name: str) -> AbstractContextManager[Span]:
        return self._tracer.span(f"query {name}", attributes={"twofold.query.type": name})

    def has_json(self, query_type: type[Query[Any]]) -> bool:
        """Whether ``query_type`` was registered with a JSON handler (``ask_json``)."""
        return query_type in self._json

    async def ask_json(
        self,
        query: Query[Any],
        *,
        min_position: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> bytes | None:
        """``ask``, answered by the query's JSON handler: the answer's JSON, or None."""
        json = self._json.get(type(query))
        if json is None:
            raise HandlerNotFoundError(f"{type(query).__name__} (a JSON handler)")
        duration, name = self._for(type(query))
        started = time.perf_counter()
        try:
            if self._tracer.enabled:
                with self._span(name):
                    await self._ready(query, min_position, timeout)
                    return await json(query, self.views)
            await self._ready(query, min_position, timeout)
            return await json(query, self.views)
        except Exception as error:
            self._failed.labels(name, type(error).__name__).inc()
            raise
        finally:
            duration.observe(time.perf_counter() - started)

    async def _ready(
        self, query: Query[Any], min_position: int | None, timeout: float
    ) -> QueryHandler:
        """Check the query, wait for ``min_position``; the query's handler."""
        route = self._routes.get(type(query))
        if route is None:
            raise HandlerNotFoundError(type(query).__name__)
        handler, reads = route
        query.validate()
        self.positions.check(reads)
        if min_position is not None:
            if min_position < 0:
                raise ValidationError({"min_position": "must be 0 or more"})
            if not (timeout >= 0 and math.isfinite(timeout)):
                raise ValidationError({"timeout": "must be a finite number of seconds >= 0"})
            started = time.perf_counter()
            name = type(query).__name__
            try:
                if await self.positions.wait(reads, min_position, timeout):
                    self._waits.labels(name).inc()
                    self._wait_duration.labels(name).observe(time.perf_counter() - started)
            except ConsistencyTimeoutError:
                self._waits.labels(name).inc()
                self._wait_duration.labels(name).observe(time.perf_counter() - started)
                self._timeouts.labels(name).inc()
                self.positions.check(reads)  # refused while it waited
                if self.head is not None:
                    head = await self.head()
                    if min_position > head:
                        raise PositionBeyondHeadError(min_position, head) from None
                raise
        return handler
