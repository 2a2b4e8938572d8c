"""`twofold dead-letters list` shows parked events per stream, in stream order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from twofold.application.views import DeadLetter
from twofold.cli.dead_letters import in_stream_order
from twofold.records import RecordedEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def parked(projection: str, stream_id: str, version: int, position: int) -> DeadLetter:
    record = RecordedEvent(
        event_id=uuid.uuid4(),
        stream_id=stream_id,
        stream_version=version,
        position=position,
        type="Happened",
        schema_version=1,
        data=b"{}",
        metadata=b"{}",
        recorded_at=NOW,
    )
    return DeadLetter(
        projection=projection,
        position=position,
        stream_id=stream_id,
        error="boom",
        parked_at=NOW,
        record=record,
    )


def test_parked_events_are_grouped_per_stream_in_stream_order() -> None:
    log_order = [
        parked("orders", "Order-b", 1, 5),
        parked("orders", "Order-a", 1, 6),
        parked("orders", "Order-b", 2, 7),
        parked("blog", "Post-z", 1, 8),
        parked("orders", "Order-a", 2, 9),
    ]
    ordered = in_stream_order(log_order)
    shown = [(d.projection, d.stream_id, d.record.stream_version) for d in ordered]
    assert shown == [
        ("blog", "Post-z", 1),
        ("orders", "Order-b", 1),
        ("orders", "Order-b", 2),
        ("orders", "Order-a", 1),
        ("orders", "Order-a", 2),
    ]
