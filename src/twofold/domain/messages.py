"""Messages: events (past tense), commands (imperative), queries (questions), and metadata.

A user writes plain typed classes; subclassing one of these bases makes the class a frozen
dataclass, so ``OrderCreated(order_id="o-1", ...)`` is typed, immutable and comparable::

    class OrderCreated(Event, type_name="OrderCreated", version=1):
        order_id: str
        customer_id: str

Messages evolve by adding fields with defaults, or, for an event, by bumping ``version`` and
registering an upcaster (see ``twofold.codec``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar, dataclass_transform

__all__ = ["Command", "Event", "Message", "Metadata", "Query"]

R = TypeVar("R")


@dataclass_transform(frozen_default=True, kw_only_default=True)
class Message:
    """Base of every message: subclasses become frozen, keyword-only dataclasses."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The dataclass machinery rewrites the class in place, so the name stays the class.
        dataclasses.dataclass(frozen=True, kw_only=True)(cls)


class Event(Message):
    """Something that happened, named in the past tense.

    ``type_name`` is the stable name stored with the event (default: the class name); it is
    what identifies the event in the log, so renaming the class does not orphan old events
    as long as ``type_name`` stays. ``version`` is the schema version of this shape.
    """

    __event_type__: ClassVar[str] = "Event"
    __event_version__: ClassVar[int] = 1

    def __init_subclass__(
        cls, *, type_name: str | None = None, version: int = 1, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if version < 1:
            raise ValueError(f"{cls.__name__}: version must be 1 or more, not {version}")
        cls.__event_type__ = type_name or cls.__name__
        cls.__event_version__ = version


class Command(Message):
    """A request to change state, named in the imperative (``ShipOrder``).

    Override ``validate`` to check the fields; raise ``twofold.ValidationError`` listing every
    field at fault. The ValidationMiddleware calls it before any handler runs.
    """

    def validate(self) -> None:
        """Raise ValidationError when a field is invalid. The default accepts everything."""


class Query(Message, Generic[R]):
    """A question, answered from the views (``GetOrder``). ``R`` is the answer's type.

    Override ``validate`` to check the fields (paging, ranges); the QueryBus calls it first.
    """

    def validate(self) -> None:
        """Raise ValidationError when a field is invalid. The default accepts everything."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Metadata:
    """Who asked, and why: carried from a command into every event it records.

    ``correlation_id`` ties together everything one request caused; ``causation_id`` names
    the message that directly caused this one; ``actor`` is who asked; ``extra`` holds any
    other string keys (for example ``idempotency_key`` or a tenant).
    """

    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.correlation_id is not None:
            out["correlation_id"] = self.correlation_id
        if self.causation_id is not None:
            out["causation_id"] = self.causation_id
        if self.actor is not None:
            out["actor"] = self.actor
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Metadata:
        extra = {
            k: str(v)
            for k, v in raw.items()
            if k not in ("correlation_id", "causation_id", "actor")
        }
        return cls(
            correlation_id=raw.get("correlation_id"),
            causation_id=raw.get("causation_id"),
            actor=raw.get("actor"),
            extra=extra,
        )
