"""The ports: small protocols that every backend implements.

Each port has a contract suite in ``twofold.testing`` that every adapter must pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from datetime import timedelta
from typing import Protocol

from twofold.records import (
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamData,
    StreamInfo,
)

__all__ = ["EventStore", "IdempotencyStore", "StreamDataReader"]


class EventStore(Protocol):
    """The write side's log: streams of events, and one global order over all of them.

    Promises (DESIGN section 2), on every backend:

    1. ``append`` writes all of its events or none; a wrong ``expected_version`` raises
       ConcurrencyError naming the expected and the actual version. ``append_streams``
       writes to several streams in one transaction, all or none, each stream checking its
       own expected version, with an optional idempotency record stored in the same
       transaction.
    2. Appending events whose ids are stored already in the same stream at the same versions
       returns the original result and stores nothing twice; the same ids with other content
       raise DuplicateEventError.
    3. Streams read from a version; ``read_all`` reads the global log after a position,
       optionally filtered by type.
    4. Once a reader has seen position p, no event below p becomes visible later.
    5. ``subscribe`` yields past events, then live ones, woken by a notification.
    6. Snapshots are kept per stream; the caller ignores those of another schema version.
    8. A successful append is durable.
    7. ``list_streams`` pages through the streams in id order, with their versions.
    9. ``identity`` is the same for the life of the store, and another for another store.
    """

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersion,
    ) -> AppendResult: ...

    async def append_streams(
        self,
        appends: Sequence[StreamAppend],
        *,
        idempotency: IdempotencyRecord | None = None,
    ) -> tuple[AppendResult, ...]:
        """Append to each stream of ``appends`` in one transaction: all of them or none.

        Each stream (at most once per call) is checked against its own expected version;
        the first that does not match raises ConcurrencyError and nothing is stored.
        Positions follow the order of ``appends``. A retry (every part's first event id
        stored already, at the same place and with the same content) returns the original
        results. ``idempotency``, when given, is stored in the same transaction; if its key
        is taken already, nothing is stored and IdempotencyKeyTakenError is raised.
        """
        ...

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]: ...

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]: ...

    def subscribe(
        self, *, after: int = 0, types: Collection[str] | None = None
    ) -> AsyncIterator[RecordedEvent]: ...

    async def list_streams(self, *, after: str | None = None, limit: int = 100) -> list[StreamInfo]:
        """Streams in ``stream_id`` order (byte order of the UTF-8 id), those after
        ``after`` (a stream id; None: from the first), at most ``limit``: a page. The last
        one's id is the ``after`` of the next page."""
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it has no events."""
        ...

    async def head_position(self) -> int:
        """The position of the newest visible event; 0 when the log is empty."""
        ...

    async def identity(self) -> str:
        """An id created with the store and kept for its life (a new store, even at the same
        address, has another): read stores record it, so that views built from one store
        are never taken for views of another."""
        ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def load_snapshot(self, stream_id: str) -> Snapshot | None: ...

    async def close(self) -> None: ...


class StreamDataReader(Protocol):
    """Optional, beside EventStore: a stream's events read narrowly, for loading aggregates.

    Only what rebuilding state needs (no ids, metadata or times), in version order; the
    Repository uses it when the store has it, and ``read_stream`` otherwise. It must return
    the same events as ``read_stream`` with the same arguments.
    """

    async def read_stream_data(
        self, stream_id: str, *, from_version: int = 1
    ) -> list[StreamData]: ...


class IdempotencyStore(Protocol):
    """Remembers the first answer given to each idempotency key.

    It reads the keys its event store writes with a command's events (``append_streams``
    with an IdempotencyRecord); ``put`` stores the answer of a command that appended
    nothing. A key is kept for ``keep_for``, then forgotten.
    """

    @property
    def keep_for(self) -> timedelta: ...

    async def get(self, key: str) -> tuple[str, bytes] | None:
        """The (fingerprint, encoded result) stored for the key, or None."""
        ...

    async def put(self, key: str, fingerprint: str, result: bytes) -> tuple[str, bytes]:
        """Store the answer unless the key is taken; return what is stored for the key."""
        ...
