"""Rows of the events table as records, and the checks on text PostgreSQL cannot store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twofold.records import NewEvent, RecordedEvent

__all__ = ["EVENT_COLUMNS", "check_text", "check_texts", "recorded_event"]

# The column order recorded_event() reads.
EVENT_COLUMNS = (
    "event_id, stream_id, stream_version, position, type, schema_version, data, metadata, "
    "recorded_at"
)


def recorded_event(row: Sequence[Any]) -> RecordedEvent:
    return RecordedEvent(
        event_id=row[0],
        stream_id=row[1],
        stream_version=row[2],
        position=row[3],
        type=row[4],
        schema_version=row[5],
        data=bytes(row[6]),
        metadata=bytes(row[7]),
        recorded_at=row[8],
    )


def check_text(what: str, value: str) -> None:
    """PostgreSQL text holds neither NUL nor lone surrogates; refuse them before the batch."""
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters; PostgreSQL cannot store them")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text ({exc.reason})") from None


def check_texts(stream_id: str, events: Sequence[NewEvent]) -> None:
    check_text("stream_id", stream_id)
    for index, event in enumerate(events):
        check_text(f"events[{index}].type", event.type)
