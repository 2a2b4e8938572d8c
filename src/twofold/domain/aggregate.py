"""Aggregates: state rebuilt by applying events; methods check rules and record new events.

::

    class Order(Aggregate):
        status: str = "NEW"

        def ship(self, address: str) -> None:
            if self.status == "CANCELLED":
                raise OrderCancelled(self.id)
            self.record(OrderShipped(order_id=self.id, address=address))

        @when(OrderShipped)
        def _shipped(self, event: OrderShipped) -> None:
            self.status = "SHIPPED"

Deciding (``ship``) and changing state (``_shipped``) are kept apart, so replaying stored
events never re-checks rules that held when they were recorded.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from twofold.domain.messages import Event

__all__ = ["Aggregate", "when"]

E = TypeVar("E", bound=Event)
S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])

_APPLIES = "__twofold_applies__"


def when(event_type: type[Event]) -> Callable[[F], F]:
    """Mark a method as the handler of ``event_type`` (on aggregates and projections)."""
    if not (isinstance(event_type, type) and issubclass(event_type, Event)):
        raise TypeError(f"@when takes an Event subclass, not {event_type!r}")

    def mark(method: F) -> F:
        setattr(method, _APPLIES, event_type)
        return method

    return mark


def collect_handlers(cls: type) -> dict[type[Event], str]:
    """Map each event type to the name of the method marked ``@when`` for it, base first."""
    handlers: dict[type[Event], str] = {}
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            event_type = getattr(member, _APPLIES, None)
            if event_type is not None:
                handlers[event_type] = name
    return handlers


class Aggregate:
    """A consistency boundary whose state is a fold over its own events.

    Class options, set as class attributes:

    - ``stream_prefix``: stream ids are ``f"{stream_prefix}-{id}"`` (default: class name).
    - ``snapshot_every``: take a snapshot every N events (default: never).
    - ``snapshot_version``: bump it whenever the snapshot's shape changes; older snapshots
      are then ignored and the aggregate is rebuilt from its events.

    The snapshot holds the class-level annotated attributes (``status: str = "NEW"``); an
    aggregate with other state overrides ``snapshot_state`` and ``restore_state``.
    """

    stream_prefix: ClassVar[str] = ""
    snapshot_every: ClassVar[int | None] = None
    snapshot_version: ClassVar[int] = 1
    _handlers: ClassVar[dict[type[Event], str]] = {}
    _state_fields: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "stream_prefix" not in cls.__dict__:
            cls.stream_prefix = cls.__name__
        if "-" in cls.stream_prefix or not cls.stream_prefix:
            raise ValueError(
                f"{cls.__name__}.stream_prefix must be non-empty and without '-', "
                f"not {cls.stream_prefix!r}"
            )
        cls._handlers = collect_handlers(cls)
        cls._state_fields = None

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self._pending: list[Event] = []

    # -- identity -------------------------------------------------------------------------

    @classmethod
    def stream_id_for(cls, id: str) -> str:
        return f"{cls.stream_prefix}-{id}"

    @property
    def stream_id(self) -> str:
        return self.stream_id_for(self.id)

    # -- events ---------------------------------------------------------------------------

    @classmethod
    def event_types(cls) -> tuple[type[Event], ...]:
        """Every event type this aggregate applies."""
        return tuple(cls._handlers)

    def record(self, event: Event) -> None:
        """Apply a new event to the state and keep it to be saved."""
        self._apply(event)
        self._pending.append(event)

    def apply_stored(self, event: Event, version: int) -> None:
        """Apply an event read from the store (no rules are checked)."""
        # _apply, inlined: this runs once per stored event on every load.
        name = self._handlers.get(type(event))
        if name is None:
            self._apply(event)  # raises, naming the missing handler
        else:
            getattr(self, name)(event)
        self.version = version

    def _apply(self, event: Event) -> None:
        name = self._handlers.get(type(event))
        if name is None:
            raise TypeError(
                f"{type(self).__name__} has no @when handler for {type(event).__name__}; "
                "add one to apply it"
            )
        getattr(self, name)(event)

    @property
    def pending_events(self) -> tuple[Event, ...]:
        return tuple(self._pending)

    def mark_saved(self, version: int) -> None:
        """Called by the repository once the pending events are stored."""
        self._pending.clear()
        self.version = version

    # -- snapshots ------------------------------------------------------------------------

    @classmethod
    def state_fields(cls) -> dict[str, Any]:
        """The annotated instance attributes that make up a snapshot, with their types."""
        if cls._state_fields is None:
            fields: dict[str, Any] = {}
            for name, hint in typing.get_type_hints(cls).items():
                if name.startswith("_") or typing.get_origin(hint) is ClassVar or hint is ClassVar:
                    continue
                if name in ("stream_prefix", "snapshot_every", "snapshot_version"):
                    continue
                fields[name] = hint
            cls._state_fields = fields
        return cls._state_fields

    def snapshot_state(self) -> dict[str, Any]:
        """The state to snapshot; override together with ``restore_state``."""
        return {name: getattr(self, name) for name in self.state_fields()}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot_state`` returned (already converted to the field types)."""
        for name, value in state.items():
            setattr(self, name, value)
