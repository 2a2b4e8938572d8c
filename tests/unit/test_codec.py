"""The codec: stable type names, exact money, upcasting on read, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from twofold import Codec, Event, RecordedEvent, uuid7
from twofold.errors import ConfigurationError, SerializationError


class PriceSet(Event, type_name="catalog.PriceSet", version=2):
    product_id: str
    price: Decimal
    currency: str


class Other(Event, type_name="catalog.PriceSet"):
    x: int


def stored(type_name: str, version: int, data: bytes) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid7(),
        stream_id="p-1",
        stream_version=1,
        position=1,
        type=type_name,
        schema_version=version,
        data=data,
        metadata=b"{}",
        recorded_at=datetime.now(UTC),
    )


def test_event_round_trips_with_exact_decimal() -> None:
    codec = Codec([PriceSet])
    new = codec.new_event(PriceSet(product_id="p", price=Decimal("12.50"), currency="EUR"))
    assert new.type == "catalog.PriceSet" and new.schema_version == 2
    assert b'"12.50"' in new.data
    back = codec.decode(stored(new.type, 2, new.data))
    assert back == PriceSet(product_id="p", price=Decimal("12.50"), currency="EUR")


def test_upcaster_brings_old_schema_to_current_without_rewriting() -> None:
    codec = Codec([PriceSet])

    @codec.upcaster("catalog.PriceSet", from_version=1)
    def add_currency(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": "EUR"}

    old = b'{"product_id": "p", "price": "3.10"}'
    record = stored("catalog.PriceSet", 1, old)
    assert codec.decode(record) == PriceSet(product_id="p", price=Decimal("3.10"), currency="EUR")
    assert record.data == old


def test_missing_upcaster_is_a_clear_error() -> None:
    codec = Codec([PriceSet])
    with pytest.raises(SerializationError, match="no upcaster from version 1"):
        codec.decode(stored("catalog.PriceSet", 1, b'{"product_id": "p", "price": "1"}'))


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="not registered"):
        Codec().decode(stored("Nope", 1, b"{}"))


def test_two_classes_cannot_share_a_type_name() -> None:
    with pytest.raises(ConfigurationError, match="taken by"):
        Codec([PriceSet, Other])


def test_data_that_does_not_fit_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="does not fit"):
        Codec([PriceSet]).decode(stored("catalog.PriceSet", 2, b'{"product_id": 5}'))


def test_events_are_frozen_and_keyword_only() -> None:
    event = PriceSet(product_id="p", price=Decimal(1), currency="EUR")
    with pytest.raises(AttributeError):
        event.price = Decimal(2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        PriceSet("p", Decimal(1), "EUR")  # type: ignore[call-arg]
