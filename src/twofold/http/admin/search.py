"""Following an event's correlation and causation ids through the log.

The event store indexes events by stream and by position, not by metadata, so a search
reads the log: the newest ``SCAN_LIMIT`` events at most, in pages, testing each event's
stored metadata bytes before decoding any. The answer says how many events it read and
whether that was the whole log, so a partial answer is never mistaken for a complete one.
"""

from __future__ import annotations

import msgspec

from twofold.application.ports import EventStore
from twofold.records import RecordedEvent

__all__ = ["SCAN_LIMIT", "Found", "search_events"]

SCAN_LIMIT = 200_000
"""Events read at most by one search (the newest ones)."""
_PAGE = 2000


class Found(msgspec.Struct, frozen=True, kw_only=True):
    events: list[RecordedEvent]
    """The matches in log order, at most the limit asked for (the newest ones)."""
    scanned: int
    """Events read."""
    complete: bool
    """Whether the whole log was read."""


async def search_events(
    store: EventStore,
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    event_id: str | None = None,
    limit: int = 100,
) -> Found:
    """Events whose metadata names ``correlation_id`` or ``causation_id``, or whose id is
    ``event_id`` (exactly one of them)."""
    head = await store.head_position()
    start = max(0, head - SCAN_LIMIT)
    field, wanted = (
        ("correlation_id", correlation_id)
        if correlation_id is not None
        else ("causation_id", causation_id)
        if causation_id is not None
        else ("event_id", event_id)
    )
    assert wanted is not None
    needle = msgspec.json.encode(wanted)  # as it appears in the stored JSON
    matches: list[RecordedEvent] = []
    scanned = 0
    after = start
    while after < head:
        page = await store.read_all(after=after, limit=min(_PAGE, head - after))
        if not page:
            break
        for record in page:
            if field == "event_id":
                if str(record.event_id) == wanted:
                    matches.append(record)
            elif needle in record.metadata:
                metadata = msgspec.json.decode(record.metadata)
                if isinstance(metadata, dict) and metadata.get(field) == wanted:
                    matches.append(record)
        scanned += len(page)
        after = page[-1].position
    return Found(events=matches[-limit:], scanned=scanned, complete=start == 0)
