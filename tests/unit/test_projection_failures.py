"""Failure policy of the projection runner: retry, then stop or park (per projection)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from twofold import (
    Codec,
    Collection,
    Event,
    NewEvent,
    PositionTracker,
    Projection,
    ProjectionRunner,
    ProjectionStatus,
    ValidationError,
    ViewTransaction,
    uuid7,
    when,
)
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.failure import Backoff, BreakerState, CircuitBreaker, RetryPolicy
from twofold.codec import encode_json
from twofold.records import ANY


class Noted(Event):
    note: str


class Notes(Projection):
    name = "notes"
    collections = (Collection("notes", indexes={"stream": str}),)
    retry_delay = 0.001
    retries = 2
    attempts: dict[str, int]

    def __init__(self) -> None:
        self.attempts = {}

    @when(Noted)
    def _noted(self, event: Noted, tx: ViewTransaction) -> None:
        self.attempts[event.note] = self.attempts.get(event.note, 0) + 1
        if event.note.startswith("bad") and not event.note.endswith("-fixed"):
            raise RuntimeError(f"cannot take {event.note}")
        stream = tx.record.stream_id
        tx.put("notes", event.note, {"stream": stream, "position": tx.record.position})


class ParkingNotes(Notes):
    name = "parking_notes"
    collections = (Collection("parking_notes", indexes={"stream": str}),)
    on_error = "park"

    @when(Noted)
    def _noted(self, event: Noted, tx: ViewTransaction) -> None:
        if event.note.startswith("bad") and not Fixes.fixed:
            raise RuntimeError(f"cannot take {event.note}")
        tx.put("parking_notes", event.note, {"stream": tx.record.stream_id})


class Fixes:
    fixed = False


Stores = tuple[InMemoryEventStore, SQLiteReadStore]


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    events = InMemoryEventStore()
    views = await SQLiteReadStore.open(tmp_path / "views.db")
    Fixes.fixed = False
    yield events, views
    await views.close()
    await events.close()


async def note(store: InMemoryEventStore, stream: str, text: str) -> None:
    event = NewEvent(event_id=uuid7(), type="Noted", data=encode_json(Noted(note=text)))
    await store.append(stream, [event], expected_version=ANY)


async def test_failing_event_is_retried_then_stops_the_projection(stores: Stores) -> None:
    events, views = stores
    projection = Notes()
    runner = ProjectionRunner(projection, event_store=events, read_store=views, codec=Codec())
    for text in ("a", "b", "bad", "c"):
        await note(events, "s-1", text)
    await runner.catch_up()
    assert runner.status is ProjectionStatus.STOPPED
    assert projection.attempts["bad"] == 1 + Notes.retries
    assert "cannot take bad" in (runner.error or "")
    # Everything before the failing event committed; nothing after it.
    assert runner.checkpoint == 2
    assert await views.get("notes", "b") is not None
    assert await views.get("notes", "c") is None
    state = await views.state("notes")
    assert state.status is ProjectionStatus.STOPPED and state.checkpoint == 2


async def test_parked_event_holds_back_its_stream_while_others_go_on(stores: Stores) -> None:
    events, views = stores
    runner = ProjectionRunner(ParkingNotes(), event_store=events, read_store=views, codec=Codec())
    await note(events, "s-1", "a")
    await note(events, "s-1", "bad")
    await note(events, "s-2", "x")
    await note(events, "s-1", "after-bad")
    await note(events, "s-2", "y")
    await runner.catch_up()
    assert runner.status is ProjectionStatus.RUNNING and runner.checkpoint == 5
    assert await views.get("parking_notes", "x") is not None
    assert await views.get("parking_notes", "y") is not None
    # The later event of the parked stream waits with it, so order is never broken.
    assert await views.get("parking_notes", "after-bad") is None
    letters = await runner.dead_letters()
    assert [(d.position, d.stream_id) for d in letters] == [(2, "s-1"), (4, "s-1")]
    assert "cannot take bad" in letters[0].error

    # Retrying while it still fails keeps everything parked.
    assert await runner.retry_dead_letters() == 0
    assert len(await runner.dead_letters()) == 2

    Fixes.fixed = True
    assert await runner.retry_dead_letters() == 2
    assert await runner.dead_letters() == []
    assert await views.get("parking_notes", "after-bad") is not None
    await note(events, "s-1", "later")
    await runner.catch_up()
    assert await views.get("parking_notes", "later") is not None


async def test_parked_streams_survive_a_restart(stores: Stores) -> None:
    events, views = stores
    first = ProjectionRunner(ParkingNotes(), event_store=events, read_store=views, codec=Codec())
    await note(events, "s-1", "bad")
    await first.catch_up()
    second = ProjectionRunner(ParkingNotes(), event_store=events, read_store=views, codec=Codec())
    await note(events, "s-1", "next")
    await second.catch_up()
    assert await views.get("parking_notes", "next") is None
    assert [d.position for d in await second.dead_letters()] == [1, 2]


async def test_runner_restart_resumes_after_checkpoint_without_reapplying(
    stores: Stores,
) -> None:
    events, views = stores
    projection = Notes()
    runner = ProjectionRunner(projection, event_store=events, read_store=views, codec=Codec())
    for text in ("a", "b"):
        await note(events, "s-1", text)
    await runner.catch_up()
    again = Notes()
    restarted = ProjectionRunner(again, event_store=events, read_store=views, codec=Codec())
    await note(events, "s-1", "c")
    await restarted.catch_up()
    assert again.attempts == {"c": 1}


class Watched:
    """The read store, noting every status stored; its first ``failing`` commits fail as a
    store that is away would."""

    def __init__(self, inner: SQLiteReadStore, failing: int = 0) -> None:
        self.inner = inner
        self.failing = failing
        self.statuses: list[tuple[ProjectionStatus, int, str | None]] = []

    async def set_status(
        self,
        projection: str,
        status: ProjectionStatus,
        error: str | None = None,
        *,
        attempts: int = 0,
    ) -> None:
        self.statuses.append((status, attempts, error))
        await self.inner.set_status(projection, status, error, attempts=attempts)

    async def commit_batch(self, *args: Any, **kwargs: Any) -> None:
        if self.failing:
            self.failing -= 1
            raise sqlite3.OperationalError("disk I/O error")
        await self.inner.commit_batch(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FlakyNotes(Notes):
    """Fails on ``bad`` twice, then takes it."""

    name = "flaky_notes"
    collections = (Collection("flaky_notes", indexes={"stream": str}),)
    retries = 5

    @when(Noted)
    def _noted(self, event: Noted, tx: ViewTransaction) -> None:
        self.attempts[event.note] = self.attempts.get(event.note, 0) + 1
        if event.note == "bad" and self.attempts["bad"] <= 2:
            raise ValueError(f"cannot take bad\x00 yet ({self.attempts['bad']})")
        tx.put("flaky_notes", event.note, {"stream": tx.record.stream_id})


async def test_a_retrying_projection_says_so_then_runs_again(stores: Stores) -> None:
    events, views = stores
    watched = Watched(views)
    runner = ProjectionRunner(FlakyNotes(), event_store=events, read_store=watched, codec=Codec())
    for text in ("a", "bad", "c"):
        await note(events, "s-1", text)
    await runner.catch_up()
    # Each attempt is stored as it starts: every process can report it.
    assert [(status, attempts) for status, attempts, _ in watched.statuses] == [
        (ProjectionStatus.RETRYING, 1),
        (ProjectionStatus.RETRYING, 2),
        (ProjectionStatus.RUNNING, 0),
    ]
    first_error = watched.statuses[0][2] or ""
    assert first_error.startswith("position 2 (stream 's-1'): ValueError: cannot take bad")
    assert "\x00" not in first_error  # a backend that cannot store NUL stores the error too
    assert runner.checkpoint == 3 and runner.status is ProjectionStatus.RUNNING
    state = await views.state("flaky_notes")
    assert (state.status, state.attempts, state.error) == (ProjectionStatus.RUNNING, 0, None)


async def test_a_store_failure_is_retried_with_backoff_and_reported(stores: Stores) -> None:
    events, views = stores
    watched = Watched(views, failing=2)
    positions = PositionTracker()
    runner = ProjectionRunner(
        Notes(),
        event_store=events,
        read_store=watched,
        codec=Codec(),
        positions=positions,
    )
    await note(events, "s-1", "a")
    task = asyncio.create_task(
        runner.supervise(policy=RetryPolicy(Backoff(initial=0.01, maximum=0.01)))
    )
    try:
        await positions.wait(["notes"], 1, timeout=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [(status, attempts) for status, attempts, _ in watched.statuses] == [
        (ProjectionStatus.RETRYING, 1),
        (ProjectionStatus.RETRYING, 2),
        (ProjectionStatus.RUNNING, 0),
    ]
    assert watched.statuses[0][2] == "OperationalError: disk I/O error"
    assert (await views.state("notes")).status is ProjectionStatus.RUNNING


async def test_repeated_store_failures_open_the_breaker_until_a_batch_commits(
    stores: Stores,
) -> None:
    events, views = stores
    watched = Watched(views, failing=3)
    positions = PositionTracker()
    runner = ProjectionRunner(
        Notes(), event_store=events, read_store=watched, codec=Codec(), positions=positions
    )
    # A clock that moves a millisecond each time it is read, however slow the machine:
    # the breaker opens for 50 readings, so it is still open when the test looks at it.
    ticks = itertools.count(0.0, 0.001)
    runner.breaker = CircuitBreaker(
        failure_threshold=3,
        backoff=Backoff(initial=0.05, maximum=0.05, jitter=0.0),
        clock=lambda: next(ticks),
    )
    opened: list[BreakerState] = []
    await note(events, "s-1", "a")
    policy = RetryPolicy(Backoff(initial=0.001, maximum=0.001))
    original = runner.failed

    async def failed(error: BaseException, *, policy: RetryPolicy = policy) -> float:
        delay = await original(error, policy=policy)
        opened.append(runner.breaker.state)
        return delay

    runner.failed = failed  # type: ignore[method-assign]
    task = asyncio.create_task(runner.supervise(policy=policy))
    try:
        await positions.wait(["notes"], 1, timeout=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert opened == [BreakerState.CLOSED, BreakerState.CLOSED, BreakerState.OPEN]
    status = runner.breaker.status()
    assert (status.state, status.opened, status.failures) == (BreakerState.CLOSED, 1, 0)


async def test_parked_events_are_counted_with_the_last_error(stores: Stores) -> None:
    events, views = stores
    runner = ProjectionRunner(ParkingNotes(), event_store=events, read_store=views, codec=Codec())
    await note(events, "s-1", "bad")
    await note(events, "s-1", "after-bad")
    await note(events, "s-2", "x")
    await runner.catch_up()
    state = await views.state("parking_notes")
    assert state.status is ProjectionStatus.RUNNING and state.parked == 2
    assert state.error == "position 1 (stream 's-1'): RuntimeError: cannot take bad"
    # A restarted runner knows it too.
    again = ProjectionRunner(ParkingNotes(), event_store=events, read_store=views, codec=Codec())
    await again.start()
    assert again.error == state.error


async def test_skipping_parked_events_releases_their_stream(stores: Stores) -> None:
    events, views = stores
    runner = ProjectionRunner(ParkingNotes(), event_store=events, read_store=views, codec=Codec())
    await note(events, "s-1", "bad")
    await note(events, "s-1", "after-bad")
    await note(events, "s-2", "bad-too")
    await runner.catch_up()
    assert [d.position for d in await runner.dead_letters()] == [1, 2, 3]

    # A position that is not parked (here: not in that stream) changes nothing.
    with pytest.raises(ValidationError) as caught:
        await runner.skip_dead_letters(stream_id="s-1", positions=[1, 3])
    assert "3 not parked in stream 's-1'" in str(caught.value)
    assert [d.position for d in await runner.dead_letters()] == [1, 2, 3]

    # Skipping the failing event alone keeps the rest of its stream parked, in order.
    assert await runner.skip_dead_letters(positions=[1]) == 1
    await note(events, "s-1", "later")
    await runner.catch_up()
    assert [d.position for d in await runner.dead_letters()] == [2, 3, 4]

    # Once a stream has nothing parked, its events apply again; the others stay parked.
    assert await runner.skip_dead_letters(stream_id="s-1") == 2
    await note(events, "s-1", "again")
    await runner.catch_up()
    assert await views.get("parking_notes", "again") is not None
    assert await views.get("parking_notes", "later") is None  # skipped: never applied
    state = await views.state("parking_notes")
    assert state.parked == 1 and "bad-too" in (state.error or "")

    assert await runner.skip_dead_letters() == 1
    state = await views.state("parking_notes")
    assert (state.parked, state.error) == (0, None)


class SizedNotes(Projection):
    """Writes each note's length in an int index: a huge one is more than SQLite can hold."""

    name = "sized_notes"
    collections = (Collection("sized_notes", indexes={"size": int}),)
    retry_delay = 0.001
    retries = 1
    on_error = "park"

    @when(Noted)
    def _noted(self, event: Noted, tx: ViewTransaction) -> None:
        size = 10**30 if event.note.startswith("huge") else len(event.note)
        tx.put("sized_notes", event.note, {"size": size})


async def test_what_the_store_refuses_is_parked_like_a_failing_handler(stores: Stores) -> None:
    events, views = stores
    runner = ProjectionRunner(SizedNotes(), event_store=events, read_store=views, codec=Codec())
    for stream, text in [("s-1", "a"), ("s-2", "b"), ("s-1", "huge"), ("s-2", "c"), ("s-1", "d")]:
        await note(events, stream, text)
    await runner.catch_up()  # one batch: the store refuses it whole, then the culprit alone
    assert runner.status is ProjectionStatus.RUNNING and runner.checkpoint == 5
    assert [await views.get("sized_notes", k) for k in ("a", "b", "c")] == [
        {"size": 1},
        {"size": 1},
        {"size": 1},
    ]
    letters = await runner.dead_letters()
    assert [(d.position, d.stream_id) for d in letters] == [(3, "s-1"), (5, "s-1")]
    assert letters[0].error.startswith("OverflowError")
