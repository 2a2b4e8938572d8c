"""Failure policy of the projection runner: retry, then stop or park (per projection)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from twofold import (
    Codec,
    Collection,
    Event,
    NewEvent,
    Projection,
    ProjectionRunner,
    ProjectionStatus,
    ViewTransaction,
    uuid7,
    when,
)
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.records import ANY
from twofold.codec import encode_json


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


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[InMemoryEventStore, SQLiteReadStore]]:
    events = InMemoryEventStore()
    views = await SQLiteReadStore.open(tmp_path / "views.db")
    Fixes.fixed = False
    yield events, views
    await views.close()
    await events.close()


async def note(store: InMemoryEventStore, stream: str, text: str) -> None:
    event = NewEvent(
        event_id=uuid7(), type="Noted", data=encode_json(Noted(note=text))
    )
    await store.append(stream, [event], expected_version=ANY)


async def test_failing_event_is_retried_then_stops_the_projection(stores: tuple) -> None:
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


async def test_parked_event_holds_back_its_stream_while_others_go_on(stores: tuple) -> None:
    events, views = stores
    runner = ProjectionRunner(
        ParkingNotes(), event_store=events, read_store=views, codec=Codec()
    )
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


async def test_parked_streams_survive_a_restart(stores: tuple) -> None:
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
    stores: tuple,
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
