"""Turning messages into stored bytes and back: the type registry, encoders and upcasters.

Events are registered by their stable ``type_name``, never by Python path. Decoding applies
registered upcasters in order, from the stored ``schema_version`` up to the class's current
``version``; stored rows are never rewritten::

    codec = Codec([OrderCreated, OrderShipped])

    @codec.upcaster("OrderCreated", from_version=1)
    def add_currency(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": "EUR"}

Encoders and decoders are built once per type and reused on the hot path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec

from twofold.domain.messages import Event, Metadata
from twofold.errors import ConfigurationError, SerializationError
from twofold.records import NewEvent, RecordedEvent, StreamData, uuid7

__all__ = ["Codec", "Upcaster"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
T = TypeVar("T")

_encoder = msgspec.json.Encoder(decimal_format="string")
_any_decoder = msgspec.json.Decoder()
_EMPTY_METADATA = b"{}"


def encode_json(value: object) -> bytes:
    """Encode any supported value (dataclasses, Decimal, datetime, UUID...) as JSON bytes."""
    return _encoder.encode(value)


def decode_json(data: bytes) -> Any:
    """Decode JSON bytes into plain Python values."""
    return _any_decoder.decode(data)


class Codec:
    """The registry of event types, and the one way events are encoded and decoded."""

    def __init__(self, event_types: Iterable[type[Event]] = ()) -> None:
        self._types: dict[str, type[Event]] = {}
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._versions: dict[str, int] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._metadata_cache: dict[tuple[str | None, ...], bytes] = {}
        self.register(*event_types)

    # -- registration ---------------------------------------------------------------------

    def register(self, *event_types: type[Event]) -> None:
        """Register event classes by their ``type_name``; registering the same class is a no-op."""
        for cls in event_types:
            if not (isinstance(cls, type) and issubclass(cls, Event)) or cls is Event:
                raise ConfigurationError(f"{cls!r} is not an Event subclass; only events register")
            name = cls.__event_type__
            known = self._types.get(name)
            if known is not None and known is not cls:
                raise ConfigurationError(
                    f"event type name {name!r} is taken by "
                    f"{known.__module__}.{known.__qualname__}; give "
                    f"{cls.__module__}.{cls.__qualname__} another type_name"
                )
            self._types[name] = cls
            self._decoders[name] = msgspec.json.Decoder(cls)
            self._versions[name] = cls.__event_version__

    def upcaster(self, type_name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function that turns ``type_name`` data of ``from_version`` into the next."""

        def register(fn: Upcaster) -> Upcaster:
            self.add_upcaster(type_name, from_version=from_version, fn=fn)
            return fn

        return register

    def add_upcaster(self, type_name: str, *, from_version: int, fn: Upcaster) -> None:
        key = (type_name, from_version)
        if key in self._upcasters:
            raise ConfigurationError(
                f"an upcaster for {type_name!r} from version {from_version} is registered already"
            )
        self._upcasters[key] = fn

    def event_class(self, type_name: str) -> type[Event]:
        cls = self._types.get(type_name)
        if cls is None:
            raise SerializationError(
                f"event type {type_name!r} is not registered; register its class with the codec"
            )
        return cls

    def knows(self, type_name: str) -> bool:
        return type_name in self._types

    @property
    def type_names(self) -> frozenset[str]:
        return frozenset(self._types)

    # -- events ---------------------------------------------------------------------------

    def encode_metadata(self, metadata: Metadata | None) -> bytes:
        if metadata is None:
            return _EMPTY_METADATA
        if metadata.extra:
            return _encoder.encode(metadata.as_dict())
        key = (metadata.correlation_id, metadata.causation_id, metadata.actor)
        cached = self._metadata_cache.get(key)
        if cached is None:
            cached = _encoder.encode(metadata.as_dict())
            if len(self._metadata_cache) < 1024:
                self._metadata_cache[key] = cached
        return cached

    def new_event(self, event: Event, metadata: bytes = _EMPTY_METADATA) -> NewEvent:
        """Wrap a domain event for appending, with a fresh time-ordered id."""
        cls = type(event)
        name = cls.__event_type__
        if self._types.get(name) is not cls:
            raise SerializationError(
                f"{cls.__qualname__} (type {name!r}) is not registered with this codec; "
                "register it before recording it"
            )
        return NewEvent(
            event_id=uuid7(),
            type=name,
            schema_version=cls.__event_version__,
            data=_encoder.encode(event),
            metadata=metadata,
        )

    def decode(self, record: RecordedEvent | NewEvent) -> Event:
        """The domain event a record holds, upcast to its class's current version."""
        return self.decode_data(
            record.type, record.schema_version, record.data, getattr(record, "position", None)
        )

    def decode_data(
        self, type_name: str, schema_version: int, data: bytes, position: int | None = None
    ) -> Event:
        """The domain event stored as ``data`` of ``type_name`` at ``schema_version``,
        upcast to its class's current version (``position`` only names it in errors)."""
        decoder = self._decoders.get(type_name)
        if decoder is not None and schema_version == self._versions[type_name]:
            try:
                return decoder.decode(data)  # type: ignore[no-any-return]
            except msgspec.ValidationError as exc:
                raise self._misfit(type_name, schema_version, exc) from exc
        if decoder is None:
            where = "" if position is None else f" at position {position}"
            raise SerializationError(
                f"event type {type_name!r}{where} is not registered; register its class with "
                "the codec"
            )
        return self._upcast(type_name, schema_version, data)

    def replay(self, rows: Iterable[StreamData], apply: Callable[[Event, int], None]) -> None:
        """Decode stored rows ``(stream_version, type, schema_version, data)`` in order and
        hand each event to ``apply(event, stream_version)``.

        The hot path of loading aggregates: the decoder is looked up once per run of events
        of one type and schema version, not once per event.
        """
        last_type, last_schema = "", -1
        decode: Callable[[bytes], Event] = self._decoder_for("", -1)
        for version, type_name, schema_version, data in rows:
            if type_name != last_type or schema_version != last_schema:
                decode = self._decoder_for(type_name, schema_version)
                last_type, last_schema = type_name, schema_version
            try:
                event = decode(data)
            except msgspec.ValidationError as exc:
                raise self._misfit(type_name, schema_version, exc) from exc
            apply(event, version)

    def _decoder_for(self, type_name: str, schema_version: int) -> Callable[[bytes], Event]:
        decoder = self._decoders.get(type_name)
        if decoder is not None and schema_version == self._versions[type_name]:
            return decoder.decode
        return functools.partial(self.decode_data, type_name, schema_version)

    def _upcast(self, name: str, schema_version: int, data: bytes) -> Event:
        current = self._versions[name]
        if schema_version > current:
            raise SerializationError(
                f"event {name!r} is stored at schema version {schema_version}, newer "
                f"than the registered class (version {current}); deploy the newer code"
            )
        try:
            raw: dict[str, Any] = _any_decoder.decode(data)
            for version in range(schema_version, current):
                fn = self._upcasters.get((name, version))
                if fn is None:
                    raise SerializationError(
                        f"event {name!r} is stored at schema version {version} and no upcaster "
                        f"from version {version} is registered; add one with Codec.upcaster"
                    )
                raw = fn(raw)
            return msgspec.convert(raw, self._types[name])
        except msgspec.ValidationError as exc:
            raise self._misfit(name, schema_version, exc) from exc

    def _misfit(
        self, name: str, schema_version: int, exc: msgspec.ValidationError
    ) -> SerializationError:
        return SerializationError(
            f"stored data of event {name!r} (schema version {schema_version}) does "
            f"not fit {self._types[name].__qualname__}: {exc}"
        )

    @staticmethod
    def decode_metadata(record: RecordedEvent) -> Metadata:
        raw = _any_decoder.decode(record.metadata) if record.metadata != _EMPTY_METADATA else {}
        return Metadata.from_dict(raw)

    # -- generic values -------------------------------------------------------------------

    @staticmethod
    def convert(value: Any, type_: type[T] | Any) -> T:
        """Convert plain decoded values to ``type_`` (used to restore snapshot fields)."""
        try:
            result: T = msgspec.convert(value, type_, strict=False)
            return result
        except msgspec.ValidationError as exc:
            raise SerializationError(f"value does not fit {type_!r}: {exc}") from exc
