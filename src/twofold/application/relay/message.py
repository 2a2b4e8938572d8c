"""How an event travels on a bus: CloudEvents 1.0 in binary mode, the same on every broker.

The event's ``data`` (JSON) is the message body, untouched; everything else is a header::

    content-type       application/json
    ce_specversion     1.0
    ce_id              event_id (the broker's de-duplication key where it has one)
    ce_source          the relay's source, a URI reference (default "twofold")
    ce_type            the event's registered type name
    ce_subject         stream_id
    ce_time            recorded_at, RFC 3339 in UTC with microseconds
    ce_position        the global position in the event store
    ce_streamversion   the event's version in its stream (1, 2, 3... with no gap)
    ce_schemaversion   the schema version of ``data``
    ce_sequence        the destination's own number of this message (1, 2, 3...)
    ce_correlationid   metadata's correlation_id, when present
    ce_causationid     metadata's causation_id, when present
    ce_traceparent     W3C trace context (CloudEvents distributed tracing), when the event's
    ce_tracestate      metadata carries ``traceparent``/``tracestate``
    ce_metadata        the whole metadata JSON, when it is not empty
    ce_skipped         "true" on a marker the relay sends in place of an event an operator
                       skipped (its body is empty): consumers count the stream's version
                       and apply nothing

Header values are text. A value with a character outside printable ASCII, or with ``%``, is
percent-encoded as UTF-8 (the rule of the CloudEvents HTTP binding), so that NATS headers,
Kafka headers and Redis fields all carry the same bytes. ``decode_message`` undoes it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import msgspec

from twofold.application.relay.errors import MalformedMessageError
from twofold.records import RecordedEvent

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_SOURCE",
    "SPEC_VERSION",
    "BusMessage",
    "decode_message",
    "encode_headers",
]

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
DEFAULT_SOURCE = "twofold"

_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_metadata_decoder = msgspec.json.Decoder(dict[str, Any])
_EMPTY = b"{}"


def _text(value: str) -> str:
    if value.isascii() and value.isprintable() and "%" not in value:
        return value
    return quote(value, safe=_SAFE)


@dataclasses.dataclass(frozen=True, slots=True)
class BusMessage:
    """One event as a bus carries it: the recorded event, the destination's sequence number
    of the message, and the source that published it."""

    record: RecordedEvent
    sequence: int
    source: str = DEFAULT_SOURCE
    skipped: bool = False
    """A marker for an event an operator skipped: it carries no data and applies nothing."""

    @property
    def event_id(self) -> str:
        return str(self.record.event_id)

    @property
    def stream_id(self) -> str:
        return self.record.stream_id

    @property
    def body(self) -> bytes:
        return b"" if self.skipped else self.record.data

    def headers(self) -> dict[str, str]:
        """The message's headers, as in the module's table."""
        headers = encode_headers(self.record, sequence=self.sequence, source=self.source)
        if self.skipped:
            headers["ce_skipped"] = "true"
        return headers


def _rfc3339(moment: datetime) -> str:
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def encode_headers(record: RecordedEvent, *, sequence: int, source: str) -> dict[str, str]:
    headers = {
        "content-type": CONTENT_TYPE,
        "ce_specversion": SPEC_VERSION,
        "ce_id": str(record.event_id),
        "ce_source": _text(source),
        "ce_type": _text(record.type),
        "ce_subject": _text(record.stream_id),
        "ce_time": _rfc3339(record.recorded_at),
        "ce_position": str(record.position),
        "ce_streamversion": str(record.stream_version),
        "ce_schemaversion": str(record.schema_version),
        "ce_sequence": str(sequence),
    }
    if record.metadata != _EMPTY:
        headers["ce_metadata"] = _text(record.metadata.decode())
        try:
            metadata = _metadata_decoder.decode(record.metadata)
        except msgspec.DecodeError:
            metadata = {}
        for key, header in _METADATA_HEADERS:
            value = metadata.get(key)
            if isinstance(value, str):
                headers[header] = _text(value)
    return headers


_METADATA_HEADERS = (
    ("correlation_id", "ce_correlationid"),
    ("causation_id", "ce_causationid"),
    ("traceparent", "ce_traceparent"),
    ("tracestate", "ce_tracestate"),
)

_REQUIRED = (
    "ce_id",
    "ce_type",
    "ce_subject",
    "ce_time",
    "ce_position",
    "ce_streamversion",
    "ce_schemaversion",
    "ce_sequence",
)


def decode_message(headers: Mapping[str, str | bytes], body: bytes) -> BusMessage:
    """The message a broker delivered, from its headers and body.

    Raises MalformedMessageError, naming the header, when the message is not one of twofold's.
    """
    text = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in headers.items()}
    version = text.get("ce_specversion")
    if version != SPEC_VERSION:
        raise MalformedMessageError("ce_specversion", f"is {version!r}, not {SPEC_VERSION!r}")
    for name in _REQUIRED:
        if name not in text:
            raise MalformedMessageError(name, "is missing")
    try:
        event_id = uuid.UUID(text["ce_id"])
    except ValueError as exc:
        raise MalformedMessageError("ce_id", f"is not a UUID ({exc})") from exc
    try:
        recorded_at = datetime.strptime(text["ce_time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC
        )
    except ValueError as exc:
        raise MalformedMessageError("ce_time", f"is not RFC 3339 UTC ({exc})") from exc
    numbers: dict[str, int] = {}
    for name in ("ce_position", "ce_streamversion", "ce_schemaversion", "ce_sequence"):
        raw = text[name]
        if not raw.isdigit():
            raise MalformedMessageError(name, f"is {raw!r}, not a positive integer")
        numbers[name] = int(raw)
    metadata = unquote(text["ce_metadata"]).encode() if "ce_metadata" in text else _EMPTY
    record = RecordedEvent(
        event_id=event_id,
        stream_id=unquote(text["ce_subject"]),
        stream_version=numbers["ce_streamversion"],
        position=numbers["ce_position"],
        type=unquote(text["ce_type"]),
        schema_version=numbers["ce_schemaversion"],
        data=body,
        metadata=metadata,
        recorded_at=recorded_at,
    )
    source = unquote(text.get("ce_source", DEFAULT_SOURCE))
    skipped = text.get("ce_skipped") == "true"
    if skipped:
        record = msgspec.structs.replace(record, data=b"null")
    return BusMessage(
        record=record, sequence=numbers["ce_sequence"], source=source, skipped=skipped
    )
