"""What waits for the writer: single appends, units (appends to several streams) and jobs.

Each is created on the event loop with a future, gets its ``outcome`` set once wherever it
is written (on the loop or on the writer's thread), and is settled on the loop
(``settle``): a future whose caller gave up (cancelled) is left alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from twofold.errors import EventStoreError
from twofold.records import (
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)

__all__ = [
    "InlineApplier",
    "Job",
    "Request",
    "Stale",
    "Unit",
    "Written",
    "set_outcome",
    "settle",
]

Connection = psycopg.Connection[Any]


class InlineApplier(Protocol):
    """A projection applied inside each batch's transaction (single-database mode)."""

    name: str

    def apply(self, conn: Connection, records: list[RecordedEvent]) -> None:
        """Apply ``records`` (the batch's events, in position order) on ``conn``, inside the
        open transaction; raising rolls the batch back."""
        ...


@dataclass(slots=True)
class Request:
    stream_id: str
    events: Sequence[NewEvent]
    expected: ExpectedVersion
    future: asyncio.Future[AppendResult]
    # Set once on the writer's thread: (True, AppendResult) or (False, exception).
    outcome: tuple[bool, Any] | None = None
    # Refused once without a read (_single._KNOWN): the next try reads the stream's version.
    refused: bool = False

    def resolve(self, result: AppendResult) -> None:
        if self.outcome is None:
            self.outcome = (True, result)

    def fail(self, exc: BaseException) -> None:
        if self.outcome is None:
            self.outcome = (False, exc)


@dataclass(slots=True)
class Written:
    request: Request
    result: AppendResult


@dataclass(slots=True)
class Stale:
    request: Request
    actual: int


@dataclass(slots=True)
class Unit:
    """One ``append_streams`` call waiting for the writer."""

    appends: tuple[StreamAppend, ...]
    idempotency: IdempotencyRecord | None
    future: asyncio.Future[tuple[AppendResult, ...]]
    # Set once on the writer's thread: (True, results) or (False, exception).
    outcome: tuple[bool, Any] | None = None

    @property
    def event_ids(self) -> set[uuid.UUID]:
        return {event.event_id for append in self.appends for event in append.events}

    @property
    def size(self) -> int:
        return sum(len(append.events) for append in self.appends)

    def resolve(self, results: tuple[AppendResult, ...]) -> None:
        if self.outcome is None:
            self.outcome = (True, results)

    def fail(self, exc: BaseException) -> None:
        if self.outcome is None:
            self.outcome = (False, exc)


@dataclass(slots=True)
class Job:
    """Work that must not interleave with appends, run on the writer's thread (``run``)."""

    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] | None = None  # set on the thread


def settle(requests: Sequence[Request | Unit]) -> None:
    # On the event loop. A future may be done already: its awaiting task was cancelled.
    for request in requests:
        outcome = request.outcome or (False, EventStoreError("append not settled"))
        set_outcome(request.future, outcome)


def set_outcome(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
