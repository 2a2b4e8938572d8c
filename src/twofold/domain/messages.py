"""Messages: events (past tense), commands (imperative), queries (questions), and metadata.

A user writes plain typed classes; subclassing one of these bases makes the class a frozen
dataclass, so ``OrderCreated(order_id="o-1", ...)`` is typed, immutable and comparable::

    class OrderCreated(Event, type_name="OrderCreated", version=1):
        order_id: str
        customer_id: str

Messages evolve by adding fields with defaults, or, for an event, by bumping ``version`` and
registering an upcaster (see ``twofold.codec``).

Two rules hold for what every backend can store and every client can address:

- **Text** holds no NUL (U+0000) and no lone surrogate (U+D800 to U+DFFF): PostgreSQL text
  and UTF-8 cannot hold them, so SQLite refuses them too (``unstorable_text``), and every
  backend accepts the same input.
- **Ids** that appear in URLs are 1 to 128 letters, digits and ``-_.:@``, starting with a
  letter or digit (``ID_PATTERN``, ``id_problem``): each is one path segment as it is, so
  a resource created under an id is readable at its URL.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar, dataclass_transform

__all__ = [
    "ID_PATTERN",
    "ID_RULE",
    "MAX_ID_LENGTH",
    "Command",
    "Event",
    "Message",
    "Metadata",
    "Query",
    "id_problem",
    "unstorable_text",
]

R = TypeVar("R")

MAX_ID_LENGTH = 128
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$(?!\n)"
r"""The id alphabet as a regular expression that reads the same to Python and to JSON Schema
(ECMA-262): Python's ``$`` also matches before a final newline, which ``(?!\n)`` refuses."""
ID_RULE = "must be 1 to 128 letters, digits or -_.:@, starting with a letter or digit"
_ID = re.compile(ID_PATTERN)
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an id (see ``ID_PATTERN``), or None."""
    if _ID.match(value) is None:
        return ID_RULE
    return None


def unstorable_text(value: object, field: str = "") -> dict[str, str]:
    """Each text in ``value`` that no backend can store, by field (``items[0].name``).

    Walks dataclasses (messages, metadata), msgspec Structs, sequences and mappings (keys
    and values). Text may not hold NUL or a lone surrogate: PostgreSQL cannot store them,
    and the rule is the same for every backend.
    """
    problems: dict[str, str] = {}
    _walk(value, field, problems)
    return problems


def _walk(value: object, field: str, problems: dict[str, str]) -> None:
    if isinstance(value, str):
        found = _UNSTORABLE.search(value)
        if found is not None:
            problems.setdefault(field or "value", _unstorable(found.group()))
    elif isinstance(value, bool | int | float | None):
        return
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{field}.{key}" if field else str(key)
            _walk(key, name, problems)
            _walk(item, name, problems)
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            _walk(item, f"{field}[{i}]", problems)
    else:
        names = getattr(value, "__struct_fields__", None)  # a msgspec Struct
        shown = getattr(value, "__struct_encode_fields__", names)  # its names in JSON
        if names is None and dataclasses.is_dataclass(value):
            names = shown = [f.name for f in dataclasses.fields(value)]
        for name, label in zip(names or (), shown or (), strict=True):
            _walk(getattr(value, name), f"{field}.{label}" if field else label, problems)


def _unstorable(char: str) -> str:
    if char == "\x00":
        return "must not contain the NUL character (U+0000); no store can hold it"
    return (
        f"must not contain a lone surrogate (U+{ord(char):04X}); "
        "send text as valid UTF-8 (UTF-16 surrogates only in pairs)"
    )


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
