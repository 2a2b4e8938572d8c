"""The CommandBus: one handler per command type, wrapped in middleware.

A handler is an async function ``(command, ctx) -> None``. It loads or creates aggregates
through ``ctx``, calls their methods, and returns; the bus then saves what they recorded::

    async def ship_order(command: ShipOrder, ctx: CommandContext) -> None:
        order = await ctx.load(Order, command.order_id)
        order.ship(command.shipping_address, command.tracking_number)

    bus.register(ShipOrder, ship_order)
    result = await bus.dispatch(ShipOrder(...), metadata)

Middleware is an async function ``(envelope, call_next) -> CommandResult``; routing is plain
data (a dict from command type to handler).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import msgspec

from twofold.application.repository import Repository
from twofold.codec import encode_json
from twofold.domain.aggregate import Aggregate
from twofold.domain.messages import Command, Metadata
from twofold.errors import ConcurrencyError, ConfigurationError, HandlerNotFoundError
from twofold.records import AppendResult, IdempotencyRecord, RecordedEvent

__all__ = [
    "CommandBus",
    "CommandContext",
    "CommandEnvelope",
    "CommandHandler",
    "CommandResult",
    "IdempotencyClaim",
    "Middleware",
    "Next",
]

A = TypeVar("A", bound=Aggregate)
C = TypeVar("C", bound=Command)


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a command did: the aggregate it touched, its new version, and the position of
    the last event written. A command that recorded nothing answers its aggregate's current
    version and the position of its last event (0 when it has none). Wait for ``position``
    on the read side to read your own write."""

    aggregate_id: str
    stream_id: str
    version: int
    position: int
    events: tuple[RecordedEvent, ...] = ()
    replayed: bool = False
    """True when an idempotency key returned the first answer instead of running again."""


@dataclasses.dataclass(slots=True)
class IdempotencyClaim:
    """An idempotency key to store with the command's events, in the append's transaction.

    Set on the envelope by the idempotency middleware; the commit sets ``stored`` once the
    key went in with the events (a command that records nothing stores no key there).
    """

    key: str
    fingerprint: str
    keep_for: timedelta
    stored: bool = False


@dataclasses.dataclass(slots=True)
class CommandEnvelope:
    """A command on its way through the middleware, with what travels beside it."""

    command: Command
    metadata: Metadata
    idempotency_key: str | None = None
    expected_version: int | None = None
    """The version the client saw (If-Match); loading an aggregate at another version fails."""
    idempotency: IdempotencyClaim | None = None


Next = Callable[[CommandEnvelope], Awaitable[CommandResult]]
Middleware = Callable[[CommandEnvelope, Next], Awaitable[CommandResult]]
CommandHandler = Callable[[Any, "CommandContext"], Awaitable[None]]


class CommandContext:
    """The unit of work of one handler run: the aggregates it loaded or created."""

    __slots__ = ("_touched", "envelope", "repository")

    def __init__(self, repository: Repository, envelope: CommandEnvelope) -> None:
        self.repository = repository
        self.envelope = envelope
        self._touched: list[Aggregate] = []

    @property
    def metadata(self) -> Metadata:
        return self.envelope.metadata

    async def load(self, cls: type[A], id: str) -> A:
        """The aggregate, or AggregateNotFoundError. Checks the client's expected version."""
        aggregate = await self.repository.get(cls, id)
        expected = self.envelope.expected_version
        if expected is not None and aggregate.version != expected:
            raise ConcurrencyError(aggregate.stream_id, expected, aggregate.version)
        self._touched.append(aggregate)
        return aggregate

    def create(self, cls: type[A], id: str) -> A:
        """A new aggregate; saving it fails with AggregateExistsError if the id is taken."""
        aggregate = cls(id)
        self._touched.append(aggregate)
        return aggregate

    async def exists(self, cls: type[Aggregate], id: str) -> bool:
        """Whether an aggregate has events (for rules such as "the customer must exist")."""
        return await self.repository.exists(cls, id)

    async def commit(self) -> CommandResult:
        """Save what every touched aggregate recorded, in one atomic append across their
        streams (with the idempotency key, if any); describe the last one that recorded."""
        if not self._touched:
            raise ConfigurationError(
                f"the handler of {type(self.envelope.command).__name__} neither loaded nor "
                "created an aggregate; call ctx.load or ctx.create"
            )
        saving = [aggregate for aggregate in self._touched if aggregate.pending_events]
        if not saving:
            last = self._touched[-1]
            return CommandResult(
                aggregate_id=last.id,
                stream_id=last.stream_id,
                version=last.version,
                position=await self.repository.position_of(last),
            )
        aggregate_id = saving[-1].id

        def describe(results: tuple[AppendResult, ...]) -> CommandResult:
            events: list[RecordedEvent] = [e for result in results for e in result.events]
            return CommandResult(
                aggregate_id=aggregate_id,
                stream_id=results[-1].stream_id,
                version=results[-1].version,
                position=max(event.position for event in events),
                events=tuple(events),
            )

        claim = self.envelope.idempotency
        record = None
        if claim is not None:
            record = IdempotencyRecord(
                key=claim.key,
                fingerprint=claim.fingerprint,
                answer=lambda results: encode_json(describe(results)),
                keep_for=claim.keep_for,
            )
        results = await self.repository.save_all(saving, self.envelope.metadata, idempotency=record)
        if claim is not None:
            claim.stored = True
        return describe(results)


class CommandBus:
    """Routes each command to its handler through the middleware, outermost first."""

    def __init__(self, repository: Repository, *, middleware: Sequence[Middleware] = ()) -> None:
        self.repository = repository
        self._handlers: dict[type[Command], CommandHandler] = {}
        self._middleware: list[Middleware] = list(middleware)
        self._pipeline: Next = self._build()

    def register(
        self, command_type: type[C], handler: Callable[[C, CommandContext], Awaitable[None]]
    ) -> None:
        if command_type in self._handlers:
            raise ConfigurationError(
                f"{command_type.__name__} has a handler already; one command, one handler"
            )
        self._handlers[command_type] = handler

    def add_middleware(self, middleware: Middleware) -> None:
        """Add middleware inside those added before (it runs closer to the handler)."""
        self._middleware.append(middleware)
        self._pipeline = self._build()

    def handles(self, command_type: type[Command]) -> bool:
        return command_type in self._handlers

    @property
    def command_types(self) -> tuple[type[Command], ...]:
        return tuple(self._handlers)

    async def dispatch(
        self,
        command: Command,
        metadata: Metadata | None = None,
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> CommandResult:
        """Run the command's handler and save what it recorded; all or nothing."""
        envelope = CommandEnvelope(
            command,
            metadata if metadata is not None else _NO_METADATA,
            idempotency_key,
            expected_version,
        )
        return await self._pipeline(envelope)

    def _build(self) -> Next:
        pipeline: Next = self._run_handler
        for middleware in reversed(self._middleware):
            pipeline = _bind(middleware, pipeline)
        return pipeline

    async def _run_handler(self, envelope: CommandEnvelope) -> CommandResult:
        handler = self._handlers.get(type(envelope.command))
        if handler is None:
            raise HandlerNotFoundError(type(envelope.command).__name__)
        ctx = CommandContext(self.repository, envelope)
        await handler(envelope.command, ctx)
        return await ctx.commit()


_NO_METADATA = Metadata()


def _bind(middleware: Middleware, call_next: Next) -> Next:
    async def run(envelope: CommandEnvelope) -> CommandResult:
        return await middleware(envelope, call_next)

    return run
