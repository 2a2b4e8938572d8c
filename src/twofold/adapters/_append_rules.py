"""Rules every event store backend applies the same way: input checks and retry matching.

Backends differ in how they store events, not in what an append means. Keeping the rules
here means memory, SQLite and PostgreSQL refuse the same inputs with the same messages and
recognise a retried append by the same test.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import timedelta

from twofold.errors import ConcurrencyError, DuplicateEventError
from twofold.records import (
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
)

__all__ = [
    "check_answer",
    "check_expected_version",
    "check_read_all",
    "check_read_stream",
    "check_stream_id",
    "check_types",
    "expected_label",
    "match_retry",
    "validate_append",
    "validate_streams",
]


def check_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str):
        raise TypeError(f"stream_id must be a str, got {type(stream_id).__name__}")
    if not stream_id:
        raise ValueError("stream_id must not be empty; pass the aggregate's id, e.g. 'order-42'")
    return stream_id


def check_page(after: object, limit: object) -> None:
    """A page of ``list_streams``: ``after`` a stream id or None, ``limit`` from 1 on."""
    if after is not None and not isinstance(after, str):
        raise TypeError(f"after must be a stream id (str) or None, got {type(after).__name__}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a whole number of streams from 1 on, not {limit!r}")


def validate_append(
    stream_id: object, events: Sequence[NewEvent], expected_version: object
) -> None:
    """Refuse a malformed append before it reaches storage; the message says what to fix."""
    # This runs on the event loop for every append: exact type tests first, the slower
    # explanations only when something is wrong.
    if type(stream_id) is not str or not stream_id:
        check_stream_id(stream_id)
    if type(expected_version) is not int or expected_version < 0:
        _check_expected(expected_version)
    if (
        type(events) is not list
        and type(events) is not tuple
        and (isinstance(events, NewEvent | str | bytes) or not isinstance(events, Sequence))
    ):
        raise TypeError("events must be a sequence (list or tuple) of NewEvent")
    if not events:
        raise ValueError(
            f"append to stream {stream_id!r} got no events; pass at least one NewEvent "
            "(a command that changes nothing should not append)"
        )
    for index, event in enumerate(events):
        if not (
            type(event) is NewEvent
            and type(event.event_id) is uuid.UUID
            and type(event.type) is str
            and event.type
            and type(event.schema_version) is int
            and event.schema_version >= 1
            and type(event.data) is bytes
            and type(event.metadata) is bytes
        ):
            _check_event(index, event)
    if len(events) > 1 and len({event.event_id for event in events}) != len(events):
        seen: set[uuid.UUID] = set()
        for event in events:
            if event.event_id in seen:
                raise ValueError(
                    f"event_id {event.event_id} appears twice in one append; "
                    "give each event its own id"
                )
            seen.add(event.event_id)


def validate_streams(
    appends: Sequence[StreamAppend], idempotency: IdempotencyRecord | None
) -> None:
    """Refuse a malformed ``append_streams`` before it reaches storage."""
    if isinstance(appends, StreamAppend | str | bytes) or not isinstance(appends, Sequence):
        raise TypeError("appends must be a sequence (list or tuple) of StreamAppend")
    if not appends:
        raise ValueError(
            "append_streams got no appends; pass at least one StreamAppend "
            "(a command that changes nothing should not append)"
        )
    streams: set[str] = set()
    ids: set[uuid.UUID] = set()
    for index, append in enumerate(appends):
        if not isinstance(append, StreamAppend):
            raise TypeError(f"appends[{index}] must be a StreamAppend, got {type(append).__name__}")
        validate_append(append.stream_id, append.events, append.expected_version)
        if append.stream_id in streams:
            raise ValueError(
                f"stream {append.stream_id!r} appears twice in one append_streams; "
                "put all of its events in one StreamAppend"
            )
        streams.add(append.stream_id)
        for event in append.events:
            if event.event_id in ids:
                raise ValueError(
                    f"event_id {event.event_id} appears twice in one append_streams; "
                    "give each event its own id"
                )
            ids.add(event.event_id)
    if idempotency is not None:
        _check_idempotency(idempotency)


def _check_idempotency(record: object) -> None:
    if not isinstance(record, IdempotencyRecord):
        raise TypeError(
            f"idempotency must be an IdempotencyRecord or None, got {type(record).__name__}"
        )
    if not isinstance(record.key, str) or not record.key:
        raise ValueError(f"an idempotency key must be a non-empty str, got {record.key!r}")
    if not isinstance(record.fingerprint, str) or not callable(record.answer):
        raise TypeError("an IdempotencyRecord needs a str fingerprint and a callable answer")
    if not isinstance(record.keep_for, timedelta) or record.keep_for <= timedelta(0):
        raise ValueError(
            f"IdempotencyRecord.keep_for must be a positive timedelta, got {record.keep_for!r}"
        )


def check_answer(answer: object) -> bytes:
    """The encoded answer an IdempotencyRecord's ``answer`` returned, checked."""
    if not isinstance(answer, bytes):
        raise TypeError(f"IdempotencyRecord.answer must return bytes, got {type(answer).__name__}")
    return answer


def _check_expected(expected_version: object) -> None:
    if isinstance(expected_version, bool) or not isinstance(expected_version, int | StreamState):
        raise TypeError(
            "expected_version must be an int (0 = empty stream) or NO_STREAM, ANY, "
            f"STREAM_EXISTS; got {expected_version!r}"
        )
    if isinstance(expected_version, int) and expected_version < 0:
        raise ValueError(
            f"expected_version must be 0 or more, got {expected_version}; "
            "use NO_STREAM for a new stream"
        )


def _check_event(index: int, event: object) -> None:
    """Raise what is wrong with ``events[index]``; subclasses of the right types pass."""
    if not isinstance(event, NewEvent):
        raise TypeError(f"events[{index}] must be a NewEvent, got {type(event).__name__}")
    if not isinstance(event.event_id, uuid.UUID):
        raise TypeError(f"events[{index}].event_id must be a uuid.UUID (see uuid7())")
    if not isinstance(event.type, str) or not event.type:
        raise ValueError(f"events[{index}].type must be a non-empty registered type name")
    if (
        isinstance(event.schema_version, bool)
        or not isinstance(event.schema_version, int)
        or event.schema_version < 1
    ):
        raise ValueError(f"events[{index}].schema_version must be an int of 1 or more")
    if not isinstance(event.data, bytes) or not isinstance(event.metadata, bytes):
        raise TypeError(f"events[{index}].data and .metadata must be bytes (encoded JSON)")


def expected_label(expected: ExpectedVersion) -> int | str:
    """How an expected version is named in errors: the int, or the state's name."""
    return expected.value if isinstance(expected, StreamState) else expected


def check_expected_version(stream_id: str, expected: ExpectedVersion, actual: int) -> None:
    """Raise ConcurrencyError unless a stream at ``actual`` satisfies ``expected``."""
    if expected is StreamState.ANY:
        return
    if expected is StreamState.STREAM_EXISTS:
        ok = actual > 0
    elif expected is StreamState.NO_STREAM:
        ok = actual == 0
    else:
        ok = actual == expected
    if not ok:
        raise ConcurrencyError(stream_id, expected_label(expected), actual)


def _same_content(new: NewEvent, stored: RecordedEvent) -> bool:
    # Metadata is left out on purpose: a retry may carry a new trace or request id, and
    # what the event says is its type, schema and data.
    return (
        new.event_id == stored.event_id
        and new.type == stored.type
        and new.schema_version == stored.schema_version
        and new.data == stored.data
    )


def match_retry(
    stream_id: str,
    events: Sequence[NewEvent],
    expected: ExpectedVersion,
    first: RecordedEvent,
    stored: Sequence[RecordedEvent],
) -> AppendResult:
    """The original result of an append that is being retried, or DuplicateEventError.

    ``first`` is the stored event whose id is ``events[0].event_id``; ``stored`` holds the
    events of ``first.stream_id`` from ``first.stream_version`` on (at least ``len(events)``
    of them when there are that many). A retry must land where the original did: same
    stream, same versions, same ids and content, in the same order. The rule is per event,
    so a retry of the first events of an earlier append returns those events' positions.
    """
    event_id = str(first.event_id)
    if first.stream_id != stream_id:
        raise DuplicateEventError(
            event_id, f"it belongs to stream {first.stream_id!r}, not {stream_id!r}"
        )
    if isinstance(expected, int) or expected is StreamState.NO_STREAM:
        wanted = 1 if expected is StreamState.NO_STREAM else int(expected) + 1
        if first.stream_version != wanted:
            raise DuplicateEventError(
                event_id,
                f"it is at version {first.stream_version} of stream {stream_id!r}, "
                f"but this append expects to write version {wanted}",
            )
    originals = list(stored[: len(events)])
    if len(originals) != len(events) or not all(
        _same_content(new, old) for new, old in zip(events, originals, strict=True)
    ):
        raise DuplicateEventError(
            event_id,
            f"stream {stream_id!r} holds it with other content or with other events after it",
        )
    last = originals[-1]
    return AppendResult(
        stream_id=stream_id,
        version=last.stream_version,
        position=last.position,
        events=tuple(originals),
    )


def check_read_stream(stream_id: object, from_version: object, limit: object) -> None:
    check_stream_id(stream_id)
    if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
        raise ValueError(f"from_version must be an int of 1 or more, got {from_version!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an int of 1 or more, got {limit!r}")


def check_read_all(after: object, limit: object, types: Collection[str] | None) -> None:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError(f"after must be a position (int of 0 or more), got {after!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int of 1 or more, got {limit!r}")
    check_types(types)


def check_types(types: Collection[str] | None) -> None:
    if types is None:
        return
    if isinstance(types, str | bytes):
        raise TypeError(
            f"types must be a collection of type names, not one string; write [{types!r}]"
        )
    for name in types:
        if not isinstance(name, str):
            raise TypeError(f"types must hold str type names, got {name!r}")
