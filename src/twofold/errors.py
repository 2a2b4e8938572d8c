"""Every error twofold raises, under one root.

Each error carries the facts as attributes and a message that says what to do::

    TwofoldError
    ├── ConfigurationError            a setting or registration is wrong; fix the setup
    ├── EventStoreError
    │   ├── ConcurrencyError          expected_version did not match; reload and retry
    │   ├── DuplicateEventError       an event_id is stored already with other content
    │   ├── IdempotencyKeyTakenError  another run of the command stored its key first
    │   └── StoreClosedError          the store was closed; make a new one
    ├── SerializationError            a type is unknown or its data does not fit
    ├── ValidationError               a message's fields are invalid (lists the fields)
    ├── CommandError
    │   ├── AggregateNotFoundError    the command targets an aggregate that does not exist
    │   ├── AggregateExistsError      the command creates an aggregate that exists already
    │   ├── DomainRuleError           a business rule refused the command (409-like)
    │   ├── IdempotencyKeyReusedError the key was used before with another command
    │   └── HandlerNotFoundError      no handler is registered for the message type
    ├── QueryError
    │   ├── ConsistencyTimeoutError   a view did not reach min_position in time
    │   └── PositionBeyondHeadError   min_position names a position the log does not have
    ├── ProjectionError
    │   ├── ForeignViewsError         the views were built from another event store; rebuild
    │   ├── GenerationChangedError    another process switched the views; reload and go on
    │   ├── InlineProjectionError     a projection applied inline failed; the append is undone
    │   │                             (twofold.application.projections)
    │   ├── LeaseLostError            this process lost a projection's lease; another runs it
    │   │                             (twofold.adapters.postgres.projections.lanes)
    │   ├── ProjectionStoppedError    a projection stopped after its retries
    │   └── UnknownProjectionError    no projection of that name is registered
    ├── ProblemError                  an HTTP answer as problem details, raised in the HTTP
    │                                 layer (twofold.http.problems)
    └── RelayError                    moving events to or from a bus; its branch is drawn in
                                      twofold.application.relay.errors
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "AggregateExistsError",
    "AggregateNotFoundError",
    "CommandError",
    "ConcurrencyError",
    "ConfigurationError",
    "ConsistencyTimeoutError",
    "DomainRuleError",
    "DuplicateEventError",
    "EventStoreError",
    "FieldError",
    "ForeignViewsError",
    "GenerationChangedError",
    "HandlerNotFoundError",
    "IdempotencyKeyReusedError",
    "IdempotencyKeyTakenError",
    "PositionBeyondHeadError",
    "ProjectionError",
    "ProjectionStoppedError",
    "QueryError",
    "SerializationError",
    "StoreClosedError",
    "TwofoldError",
    "UnknownProjectionError",
    "ValidationError",
]


class TwofoldError(Exception):
    """The root of every error twofold raises."""


class ConfigurationError(TwofoldError):
    """A setting, URL or registration is wrong; the message says which and how to fix it."""


class EventStoreError(TwofoldError):
    """The event store refused or failed an operation."""


class ConcurrencyError(EventStoreError):
    """The stream is not at the version the writer expected.

    Reload the aggregate and decide again (the CommandBus retry middleware does this).
    """

    def __init__(self, stream_id: str, expected: int | str, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, but the append expected {expected}; "
            "reload the stream and decide again"
        )


class DuplicateEventError(EventStoreError):
    """An event id is stored already, with other content or at another place."""

    def __init__(self, event_id: str, detail: str) -> None:
        self.event_id = event_id
        super().__init__(
            f"event {event_id} is stored already: {detail}; "
            "give each new event a fresh event_id, and retry only with the original events"
        )


class IdempotencyKeyTakenError(EventStoreError):
    """The idempotency key of an append is stored already: another run of the same command
    recorded its events and answer first, so this append stored nothing."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} is stored already by another run of the command, so "
            "nothing was appended; answer with the answer stored for the key"
        )


class StoreClosedError(EventStoreError):
    """The store was closed; construct a new one."""

    def __init__(self, what: str = "event store") -> None:
        super().__init__(f"the {what} is closed; create a new one to go on")


class SerializationError(TwofoldError):
    """A message type is not registered, or stored data does not fit its type."""


class CommandError(TwofoldError):
    """A command was refused; nothing was recorded."""


class FieldError:
    """One field at fault in a ValidationError."""

    __slots__ = ("field", "message")

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message

    def __repr__(self) -> str:
        return f"FieldError({self.field!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FieldError)
            and other.field == self.field
            and other.message == self.message
        )

    def __hash__(self) -> int:
        return hash((self.field, self.message))

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ValidationError(TwofoldError):
    """A command's or query's fields are invalid; `errors` lists each field and what is wrong."""

    def __init__(self, errors: Sequence[FieldError] | Mapping[str, str]) -> None:
        if isinstance(errors, Mapping):
            errors = [FieldError(k, v) for k, v in errors.items()]
        self.errors: tuple[FieldError, ...] = tuple(errors)
        listed = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        super().__init__(f"invalid input ({listed}); correct these fields and send again")


class AggregateNotFoundError(CommandError):
    """The command targets an aggregate that has no events."""

    def __init__(self, aggregate_type: str, aggregate_id: str) -> None:
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        super().__init__(
            f"{aggregate_type} {aggregate_id!r} does not exist; create it first or check the id"
        )


class AggregateExistsError(CommandError):
    """The command would create an aggregate whose id is taken."""

    def __init__(self, aggregate_type: str, aggregate_id: str) -> None:
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        super().__init__(f"{aggregate_type} {aggregate_id!r} exists already; choose another id")


class DomainRuleError(CommandError):
    """A business rule refused the command. Subclass it for your own rules."""

    code: str = "domain_rule"


class IdempotencyKeyReusedError(CommandError):
    """An idempotency key came back with a different command."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} was used before with a different command; "
            "use a new key for a new command"
        )


class HandlerNotFoundError(CommandError):
    """No handler is registered for this message type."""

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type
        super().__init__(f"no handler is registered for {message_type}; register one on the bus")


class QueryError(TwofoldError):
    """A query could not be answered."""


class ConsistencyTimeoutError(QueryError):
    """The views a query reads did not reach `min_position` before the timeout."""

    def __init__(self, projection: str, wanted: int, current: int, timeout: float) -> None:
        self.projection = projection
        self.wanted = wanted
        self.current = current
        self.behind = max(0, wanted - current)
        self.timeout = timeout
        super().__init__(
            f"projection {projection!r} is at position {current}, {self.behind} behind the "
            f"requested position {wanted}, after waiting {timeout:g}s; retry later or raise the "
            "timeout"
        )


class PositionBeyondHeadError(QueryError):
    """``min_position`` is beyond the log's head: no event has that position yet."""

    def __init__(self, wanted: int, head: int) -> None:
        self.wanted = wanted
        self.head = head
        super().__init__(
            f"position {wanted} does not exist yet: the event log ends at position {head}; "
            "pass a position that a command answered (its Twofold-Position)"
        )


class ProjectionError(TwofoldError):
    """A projection failed or is unknown."""


class GenerationChangedError(ProjectionError):
    """The copy of the views a batch was written for is no longer the one being written."""

    def __init__(self, projection: str, generation: int) -> None:
        self.projection = projection
        self.generation = generation
        super().__init__(
            f"projection {projection!r} no longer writes generation {generation} (a rebuild or "
            "reset switched it); the runner reloads its state and goes on"
        )


class ProjectionStoppedError(ProjectionError):
    """A projection stopped after exhausting its retries on an event."""

    def __init__(self, projection: str, position: int, reason: str) -> None:
        self.projection = projection
        self.position = position
        self.reason = reason
        super().__init__(
            f"projection {projection!r} stopped at position {position}: {reason}; "
            "fix the handler or the data, then reset or restart the projection"
        )


class UnknownProjectionError(ProjectionError):
    """No projection of that name is registered."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        super().__init__(
            f"no projection named {name!r}; known projections: {', '.join(sorted(known)) or 'none'}"
        )


class ForeignViewsError(ProjectionError):
    """A projection's views do not belong to the event store: they were built from another
    one, or they reflect positions the log does not have. The projection refuses to run and
    queries refuse to read its views until they are rebuilt from this event store."""

    def __init__(self, projection: str, reason: str) -> None:
        self.projection = projection
        self.reason = reason
        super().__init__(
            f"the views of projection {projection!r} do not belong to this event store: "
            f"{reason}. Point TWOFOLD_EVENT_STORE back at the event store they were built "
            "from, or rebuild them from this one: point TWOFOLD_READ_STORE at an empty read "
            f"store (or delete this one) and start again, or call App.rebuild({projection!r})"
        )
