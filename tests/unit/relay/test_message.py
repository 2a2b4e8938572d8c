"""The bus message format: CloudEvents 1.0 binary mode, round-tripped exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twofold.application.relay.errors import MalformedMessageError
from twofold.application.relay.message import BusMessage, decode_message
from twofold.records import RecordedEvent, uuid7


def record(**fields: object) -> RecordedEvent:
    values: dict[str, object] = {
        "event_id": uuid7(),
        "stream_id": "order-1",
        "stream_version": 3,
        "position": 42,
        "type": "OrderShipped",
        "schema_version": 2,
        "data": b'{"order_id":"order-1"}',
        "metadata": b'{"correlation_id":"c-1","causation_id":"m-9","actor":"ann"}',
        "recorded_at": datetime(2026, 5, 1, 12, 30, 45, 123456, tzinfo=UTC),
    }
    values.update(fields)
    return RecordedEvent(**values)  # type: ignore[arg-type]


def test_headers_follow_cloudevents_binary_mode_with_twofold_extensions() -> None:
    event = record()
    headers = BusMessage(record=event, sequence=7, source="shop").headers()
    assert headers == {
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": str(event.event_id),
        "ce_source": "shop",
        "ce_type": "OrderShipped",
        "ce_subject": "order-1",
        "ce_time": "2026-05-01T12:30:45.123456Z",
        "ce_position": "42",
        "ce_streamversion": "3",
        "ce_schemaversion": "2",
        "ce_sequence": "7",
        "ce_metadata": '{"correlation_id":"c-1","causation_id":"m-9","actor":"ann"}',
        "ce_correlationid": "c-1",
        "ce_causationid": "m-9",
    }


def test_a_message_decodes_to_the_same_event_and_sequence() -> None:
    sent = BusMessage(record=record(), sequence=7, source="shop")
    received = decode_message(sent.headers(), sent.body)
    assert received == sent


def test_headers_as_bytes_and_in_any_case_decode_too() -> None:
    sent = BusMessage(record=record(metadata=b"{}"), sequence=1)
    headers = {k.upper(): v.encode() for k, v in sent.headers().items()}
    assert "CE_METADATA" not in headers
    assert decode_message(headers, sent.body) == sent


def test_text_outside_printable_ascii_is_percent_encoded_and_restored() -> None:
    event = record(
        stream_id="commande-é/100%",
        metadata='{"actor":"zoë","traceparent":"00-abc-def-01","note":"a\\nb"}'.encode(),
    )
    sent = BusMessage(record=event, sequence=1, source="café")
    headers = sent.headers()
    assert all(v.isascii() and v.isprintable() for v in headers.values())
    assert headers["ce_subject"] == "commande-%C3%A9/100%25"
    assert headers["ce_traceparent"] == "00-abc-def-01"
    assert decode_message(headers, sent.body) == sent


@pytest.mark.parametrize(
    ("header", "value", "problem"),
    [
        ("ce_specversion", "0.3", "is '0.3'"),
        ("ce_id", "not-a-uuid", "is not a UUID"),
        ("ce_time", "yesterday", "is not RFC 3339"),
        ("ce_position", "-1", "not a positive integer"),
        ("ce_sequence", None, "is missing"),
    ],
)
def test_a_foreign_message_is_refused_naming_the_header(
    header: str, value: str | None, problem: str
) -> None:
    headers = BusMessage(record=record(), sequence=1).headers()
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    with pytest.raises(MalformedMessageError, match=problem) as caught:
        decode_message(headers, b"{}")
    assert caught.value.header == header
