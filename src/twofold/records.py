"""What the event store keeps and returns: plain records, independent of any backend.

``data`` and ``metadata`` are JSON bytes: the store never decodes them. The codec turns them
into domain events (upcasting older schema versions on the way).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "ExpectedVersion",
    "IdempotencyRecord",
    "NewEvent",
    "RecordedEvent",
    "Snapshot",
    "StreamAppend",
    "StreamData",
    "StreamInfo",
    "StreamState",
    "uuid7",
]


class StreamState(enum.Enum):
    """Expected states of a stream that are not an exact version."""

    NO_STREAM = "no_stream"
    """The stream must not exist yet (same as the exact version 0)."""
    ANY = "any"
    """Append whatever the stream's version is."""
    STREAM_EXISTS = "stream_exists"
    """The stream must have at least one event."""


NO_STREAM = StreamState.NO_STREAM
ANY = StreamState.ANY
STREAM_EXISTS = StreamState.STREAM_EXISTS

ExpectedVersion = int | StreamState
"""An exact version (0 = the stream is empty), or one of the StreamState values."""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event to append: its identity, its registered type and its encoded payload."""

    event_id: uuid.UUID
    type: str
    schema_version: int = 1
    data: bytes = b"{}"
    metadata: bytes = b"{}"


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: with its stream version, global position and time."""

    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    position: int
    type: str
    schema_version: int
    data: bytes
    metadata: bytes
    recorded_at: datetime


class StreamInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One stream of the log, as ``EventStore.list_streams`` lists it."""

    stream_id: str
    version: int
    """The stream's current version (its number of events)."""
    last_position: int
    """The global position of its newest event."""


StreamData = tuple[int, str, int, bytes]
"""One stored event as rebuilding an aggregate needs it:
``(stream_version, type, schema_version, data)``."""


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one append: the stream's new version and the last event's position."""

    stream_id: str
    version: int
    position: int
    events: tuple[RecordedEvent, ...] = ()


class StreamAppend(msgspec.Struct, frozen=True, kw_only=True):
    """One stream's part of an ``append_streams`` call: its events and the version it expects."""

    stream_id: str
    events: tuple[NewEvent, ...]
    expected_version: ExpectedVersion


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyRecord:
    """An idempotency key stored with a command's events, in the append's own transaction.

    So the key and its answer are stored if and only if the events are: a crash can never
    leave events without the answer a retry needs. ``answer(results)`` encodes the answer
    from the append's results; the store calls it inside the transaction (it must be quick
    and must not do I/O). A key stored less than ``keep_for`` ago is taken: the append then
    stores nothing and raises IdempotencyKeyTakenError; an older one is replaced.
    """

    key: str
    fingerprint: str
    answer: Callable[[tuple[AppendResult, ...]], bytes]
    keep_for: timedelta


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An aggregate's state at ``version``, encoded by its aggregate type.

    ``schema_version`` is the aggregate type's snapshot version when it was taken; a snapshot
    of any other version is ignored on load, never misread.
    """

    stream_id: str
    aggregate_type: str
    version: int
    schema_version: int
    state: bytes


class _Entropy:
    """Random bytes from the OS's CSPRNG, drawn a block at a time.

    ``os.urandom`` releases the GIL; on the event loop's thread, with the store's threads
    busy, getting it back can take far longer than the call itself. One call per 409 ids
    instead of one per id. A forked child starts with a fresh block, so parent and child
    never hand out the same bytes.
    """

    _BLOCK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0
        self._hooked = False

    def take(self, size: int) -> bytes:
        with self._lock:
            offset = self._offset
            if offset + size > len(self._block):
                if not self._hooked:
                    os.register_at_fork(after_in_child=self._forget)
                    self._hooked = True
                self._block = os.urandom(self._BLOCK)
                offset = 0
            self._offset = offset + size
            return self._block[offset : offset + size]

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0


_entropy = _Entropy()


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (version 7): 48 bits of Unix milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_entropy.take(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    # Set version (7) and the RFC 4122 variant bits.
    value &= ~(0xF << 76)
    value |= 0x7 << 76
    value &= ~(0x3 << 62)
    value |= 0x2 << 62
    return uuid.UUID(int=value)
