"""Projections: fold events into views built for the questions users ask.

::

    class OrderSummaries(Projection):
        name = "order_summaries"
        collections = (Collection("orders", indexes={"status": str}),)
        on_error = "park"

        @when(OrderShipped)
        def _shipped(self, event: OrderShipped, tx: ViewTransaction) -> None:
            order = tx.get("orders", event.order_id)
            ...
            tx.put("orders", event.order_id, order)

Handlers are synchronous: the runner applies a whole batch in one read-store transaction,
on the store's own thread, and commits the views with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from twofold.application.views import Collection, ViewTransaction
from twofold.codec import Codec
from twofold.domain.aggregate import collect_handlers
from twofold.domain.messages import Event
from twofold.errors import ProjectionError
from twofold.records import RecordedEvent

__all__ = ["InlineProjectionError", "Projection"]

Handler = Callable[[Event, ViewTransaction], None]


class Projection:
    """Base of every projection. Class options:

    - ``name``: stable name of the projection (its checkpoint is kept under it).
    - ``collections``: the collections it owns; only it writes them.
    - ``batch_size``: events applied per transaction (at most; a catch-up or a rebuild
      reads the log in pages of this size).
    - ``retries``, ``retry_delay``: a failing event is retried with exponential backoff
      (``retry_delay`` * 2^n seconds, capped at 30 s, with jitter: twofold's one failure
      policy, ``twofold.application.failure``) this many times before ``on_error`` applies.
    - ``on_error``: ``"stop"`` stops the projection and reports the error; ``"park"`` moves
      the event, and every later event of its stream, to the dead letters and goes on.
    """

    name: ClassVar[str] = ""
    collections: ClassVar[tuple[Collection, ...]] = ()
    batch_size: ClassVar[int] = 1000
    retries: ClassVar[int] = 3
    retry_delay: ClassVar[float] = 0.05
    on_error: ClassVar[Literal["stop", "park"]] = "stop"
    _handlers: ClassVar[dict[type[Event], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = collect_handlers(cls)
        if cls.name and not (cls.name.isidentifier() and cls.name.islower()):
            raise ValueError(f"projection name {cls.name!r} must be a lower-case identifier")
        if cls.on_error not in ("stop", "park"):
            raise ValueError(f"{cls.__name__}.on_error must be 'stop' or 'park'")
        if not (isinstance(cls.retries, int) and cls.retries >= 0):
            raise ValueError(f"{cls.__name__}.retries must be a whole number from 0 on")
        if not cls.retry_delay > 0:
            raise ValueError(f"{cls.__name__}.retry_delay must be above 0 seconds")

    @classmethod
    def event_types(cls) -> tuple[type[Event], ...]:
        return tuple(cls._handlers)

    @classmethod
    def handled_type_names(cls) -> frozenset[str]:
        return frozenset(t.__event_type__ for t in cls._handlers)

    def bind(self, codec: Codec) -> dict[str, Handler]:
        """Handlers by stored type name, as bound methods (looked up once, not per event)."""
        codec.register(*self.event_types())
        return {t.__event_type__: getattr(self, name) for t, name in self._handlers.items()}


class HandlerFailed(Exception):
    """Raised inside a batch: the event at ``index`` failed with ``error``."""

    def __init__(self, index: int, record: RecordedEvent, error: BaseException) -> None:
        self.index = index
        self.record = record
        self.error = error
        super().__init__(f"{type(error).__name__}: {error}")


def make_apply(
    handlers: dict[str, Handler],
    codec: Codec,
    records: list[RecordedEvent],
    skip_streams: frozenset[str] | set[str] = frozenset(),
) -> Callable[[ViewTransaction], None]:
    """A function that applies ``records`` to a view transaction, in order.

    Events of ``skip_streams`` (parked streams) are not applied. A failing handler raises
    HandlerFailed naming the event, so the runner can commit what came before it.
    """
    decode = codec.decode

    def apply(tx: ViewTransaction) -> None:
        for index, record in enumerate(records):
            handler = handlers.get(record.type)
            if handler is None or record.stream_id in skip_streams:
                continue
            tx.record = record
            try:
                handler(decode(record), tx)
            except Exception as exc:
                raise HandlerFailed(index, record, exc) from exc

    return apply


class InlineProjectionError(ProjectionError):
    """A projection applied inline (single-database mode) failed on an event, so the append
    that recorded the event was not stored: events never commit without their views."""

    def __init__(self, projection: str, record: RecordedEvent, error: BaseException) -> None:
        self.projection = projection
        self.stream_id = record.stream_id
        self.event_type = record.type
        self.error = error
        super().__init__(
            f"nothing was appended: inline projection {projection!r} failed on {record.type} "
            f"of stream {record.stream_id!r} ({type(error).__name__}: {error}); fix its "
            "handler, or run it asynchronously (leave it out of TWOFOLD_INLINE_PROJECTIONS)"
        )
