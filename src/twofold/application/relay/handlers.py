"""Integration handlers: plain async functions run for events, for side effects (mail,
webhooks), from the local log or from a bus.

::

    handlers = IntegrationHandlers("mailer")

    @handlers.on(OrderShipped)
    async def mail_customer(event: OrderShipped, context: HandlerContext) -> None:
        await mail.send(..., idempotency_key=str(context.event_id))

Delivery is at least once: a handler may see an event again after a crash or a redelivery,
so it uses ``context.event_id`` to do its effect once (an idempotency key, a unique row).
Events of one runner are handled one at a time, in the order they come (the log's order, or
the broker's). A failing handler is retried with backoff until it succeeds: the runner does
not go past an event whose effect is not done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from twofold.application.failure import HANDLER_RETRY, RetryPolicy
from twofold.application.ports import EventStore
from twofold.application.relay.errors import PublishError
from twofold.application.relay.source import BusSource
from twofold.application.relay.store import RelayStore
from twofold.codec import Codec
from twofold.domain.messages import Event, Metadata
from twofold.records import RecordedEvent

__all__ = [
    "BusHandlerRunner",
    "HandlerContext",
    "IntegrationHandlers",
    "LogHandlerRunner",
]

log = logging.getLogger("twofold.handlers")


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerContext:
    record: RecordedEvent
    metadata: Metadata

    @property
    def event_id(self) -> uuid.UUID:
        return self.record.event_id


Handler = Callable[[Any, HandlerContext], Awaitable[None]]


class IntegrationHandlers:
    """A named set of async handlers, by event type."""

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("integration handlers need a name (their checkpoint's)")
        self.name = name
        self._handlers: dict[type[Event], list[Handler]] = {}

    def on(self, *event_types: type[Event]) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for event_type in event_types:
                self._handlers.setdefault(event_type, []).append(fn)
            return fn

        return register

    def bind(self, codec: Codec) -> dict[str, list[Handler]]:
        codec.register(*self._handlers)
        return {t.__event_type__: list(fns) for t, fns in self._handlers.items()}


class _Runner:
    def __init__(self, handlers: IntegrationHandlers, *, codec: Codec, policy: RetryPolicy) -> None:
        self.handlers = handlers
        self.name = handlers.name
        self.codec = codec
        self.policy = policy
        """Retrying a failing handler (and a broker that fails to deliver). With a limit, the
        runner stops once the retries are spent: ``run()`` raises the last error."""
        self._bound = handlers.bind(codec)
        self.handled = 0
        self.failures = 0

    async def handle(self, record: RecordedEvent) -> None:
        """Run the record's handlers until they all succeed once (retrying with backoff)."""
        fns = self._bound.get(record.type)
        if not fns:
            return
        event = self.codec.decode(record)
        context = HandlerContext(record, self.codec.decode_metadata(record))
        for fn in fns:
            attempt = 0
            while True:
                try:
                    await fn(event, context)
                    break
                except Exception as exc:
                    self.failures += 1
                    if self.policy.exhausted(attempt):
                        raise
                    delay = self.policy.delay(attempt)
                    attempt += 1
                    log.warning(
                        "handler %s of %s failed on position %d (%s: %s); again in %.2fs",
                        getattr(fn, "__name__", fn), self.name, record.position,
                        type(exc).__name__, exc, delay,
                    )  # fmt: skip
                    await asyncio.sleep(delay)
        self.handled += 1


class LogHandlerRunner(_Runner):
    """Runs handlers for the local event store's log; the checkpoint is kept in a RelayStore
    under ``handlers:<name>``, stored after each event's handlers are done."""

    def __init__(
        self,
        handlers: IntegrationHandlers,
        *,
        event_store: EventStore,
        store: RelayStore,
        codec: Codec,
        policy: RetryPolicy = HANDLER_RETRY,
    ) -> None:
        super().__init__(handlers, codec=codec, policy=policy)
        self.event_store = event_store
        self.store = store
        self.key = f"handlers:{self.name}"
        self.checkpoint = 0

    async def run(self) -> None:
        self.checkpoint = (await self.store.prepare(self.key)).position
        types = set(self._bound)
        async for record in self.event_store.subscribe(after=self.checkpoint, types=types):
            await self.handle(record)
            self.checkpoint = record.position
            await self.store.advance(self.key, position=record.position, sequence=0)


class BusHandlerRunner(_Runner):
    """Runs handlers for what a BusSource delivers; acknowledges each batch after it."""

    def __init__(
        self,
        handlers: IntegrationHandlers,
        *,
        source: BusSource,
        codec: Codec,
        policy: RetryPolicy = HANDLER_RETRY,
        batch_size: int = 100,
        receive_timeout: float = 1.0,
    ) -> None:
        super().__init__(handlers, codec=codec, policy=policy)
        self.source = source
        self.batch_size = batch_size
        self.receive_timeout = receive_timeout

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                deliveries = await self.source.receive(
                    max_messages=self.batch_size, timeout=self.receive_timeout
                )
                attempt = 0
            except PublishError as exc:
                if self.policy.exhausted(attempt):
                    raise
                delay = self.policy.delay(attempt)
                attempt += 1
                log.warning("handlers %s: %s; again in %.2fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                continue
            for delivery in deliveries:
                if not delivery.message.skipped:
                    await self.handle(delivery.message.record)
            try:
                await self.source.ack(deliveries)
            except PublishError as exc:
                log.warning("handlers %s could not acknowledge: %s", self.name, exc)
