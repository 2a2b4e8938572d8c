"""Operations performed by one App while ANOTHER App over the same stores runs the
projection: the split of `twofold serve` (server) and the command line (operator).

Backend-neutral: the SQLite and PostgreSQL tests build the two Apps and call these.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar, Literal

from twofold import (
    App,
    Collection,
    Event,
    Projection,
    ProjectionStatus,
    Service,
    Settings,
    ViewTransaction,
    bootstrap,
    when,
)
from twofold.records import ANY

DEADLINE = 30.0
"""Seconds a poll of the stored state may take before the test fails (a deadline for a
broken mechanism, not a performance bound)."""


class Noted(Event):
    note_id: str
    text: str


class Notes(Projection):
    """One document per note: its latest text and how many texts it had."""

    name = "notes"
    collections = (Collection("notes", indexes={"text": str}),)
    on_error: ClassVar[Literal["stop", "park"]] = "park"
    retries = 1
    retry_delay = 0.001
    broken: ClassVar[set[str]] = set()
    """Texts the handler refuses (shared by every App of the test: the operator's retry
    applies with its own instance)."""

    @when(Noted)
    def _noted(self, event: Noted, tx: ViewTransaction) -> None:
        if event.text in self.broken:
            raise RuntimeError(f"cannot take {event.text!r}")
        old = tx.get("notes", event.note_id)
        count = 1 if old is None else old["count"] + 1
        tx.put("notes", event.note_id, {"text": event.text, "count": count})


NOTES = Service(name="notes", register=lambda commands, queries: None, projections=(Notes,))


async def note(app: App, note_id: str, text: str) -> int:
    """Append a note's event to the log; its position."""
    result = await app.event_store.append(
        f"note-{note_id}", [app.codec.new_event(Noted(note_id=note_id, text=text))],
        expected_version=ANY,
    )  # fmt: skip
    return result.position


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds; fail after DEADLINE seconds naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {DEADLINE}s: {what}")
        await asyncio.sleep(0.02)


async def applied(app: App, position: int) -> None:
    """Wait until the stored checkpoint of ``notes`` reached ``position``."""

    async def reached() -> bool:
        return (await app.read_store.state("notes")).checkpoint >= position

    await until(reached, f"notes applied up to {position}")


async def pause_and_resume(server: App, operator: App) -> None:
    ops = operator.operations
    first = await note(server, "a", "one")
    await applied(operator, first)
    assert await ops.pause("notes") is True
    [report] = await ops.status()
    assert (report.status, report.level, report.paused) == ("paused", "DEGRADED", True)
    assert (await operator.read_store.state("notes")).status is ProjectionStatus.PAUSED

    second = await note(server, "a", "two")  # the server's runner has stopped: not applied
    [report] = await ops.status()
    assert (report.position, report.lag_events) == (first, second - first)
    assert await operator.read_store.get("notes", "a") == {"text": "one", "count": 1}

    assert await ops.resume("notes") is True
    await applied(operator, second)
    assert await operator.read_store.get("notes", "a") == {"text": "two", "count": 2}
    [report] = await ops.status()
    assert (report.status, report.level, report.paused) == ("running", "UP", False)


async def retry_and_skip(server: App, operator: App) -> None:
    ops = operator.operations
    Notes.broken = {"bad"}
    await note(server, "a", "fine")
    poisoned = await note(server, "a", "bad")
    behind = await note(server, "a", "after bad")
    other = await note(server, "b", "fine")
    await applied(operator, other)
    letters = await ops.dead_letters("notes")
    assert [(d.position, d.stream_id) for d in letters] == [
        (poisoned, "note-a"),
        (behind, "note-a"),
    ]
    assert (await ops.dead_letter("notes", poisoned)).error.startswith("RuntimeError")
    [report] = await ops.status()
    assert (report.level, report.parked) == ("DEGRADED", 2)

    assert await ops.retry("notes") == 0  # still broken: the stream stays parked, whole
    assert len(await ops.dead_letters("notes")) == 2
    Notes.broken = set()
    assert await ops.retry("notes", stream_id="note-a") == 2
    assert await operator.read_store.get("notes", "a") == {"text": "after bad", "count": 3}
    # The server's runner took the release: the stream's next event applies at once.
    later = await note(server, "a", "later")
    await applied(operator, later)
    assert await operator.read_store.get("notes", "a") == {"text": "later", "count": 4}
    assert await ops.dead_letters() == []

    Notes.broken = {"poison"}
    parked = await note(server, "c", "poison")
    await applied(operator, parked)
    assert [d.position for d in await ops.dead_letters("notes")] == [parked]
    assert await ops.skip("notes", stream_id="note-c", positions=[parked]) == 1
    fixed = await note(server, "c", "meant")
    await applied(operator, fixed)
    assert await operator.read_store.get("notes", "c") == {"text": "meant", "count": 1}
    [report] = await ops.status()
    assert (report.level, report.parked, report.error) == ("UP", 0, None)


async def rebuild_while_serving(server: App, operator: App) -> None:
    for index in range(30):
        last = await note(server, f"n{index % 7}", f"text {index}")
    await applied(operator, last)
    before = await operator.read_store.state("notes")
    seen: list[tuple[int, int]] = []
    checkpoint = await operator.operations.rebuild(
        "notes", progress=lambda done, total: seen.append((done, total))
    )
    assert checkpoint >= last
    assert seen and seen[-1] == (checkpoint, checkpoint)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    after = await operator.read_store.state("notes")
    assert after.generation > before.generation
    # The server's runner goes on in the new copy.
    newer = await note(server, "n1", "after the rebuild")
    await applied(operator, newer)
    assert server.runner("notes").generation == after.generation
    document = await operator.read_store.get("notes", "n1")
    assert document is not None and document["text"] == "after the rebuild"
    report = await operator.operations.verify("notes")
    assert report.consistent, [p.summary() for p in report.projections]


async def reset_while_serving(server: App, operator: App) -> None:
    for index in range(5):
        last = await note(server, f"r{index}", "x")
    await applied(operator, last)
    before = await operator.read_store.state("notes")
    await operator.operations.reset("notes")

    async def replayed() -> bool:
        state = await operator.read_store.state("notes")
        return state.generation > before.generation and state.checkpoint >= last

    await until(replayed, "the server replays the reset views")
    assert await operator.read_store.count("notes") == 5


async def verify_finds_divergence(server: App, operator: App) -> None:
    ops = operator.operations
    for note_id in ("a", "b", "c"):
        last = await note(server, note_id, f"text of {note_id}")
    await applied(operator, last)
    clean = await ops.verify()
    assert clean.consistent and ops.last_verify is clean
    [projection] = clean.projections
    assert (projection.position, projection.collections[0].documents) == (last, 3)
    generation = (await operator.read_store.state("notes")).generation

    def tamper(tx: ViewTransaction) -> None:
        tx.put("notes", "a", {"text": "tampered", "count": 1})
        tx.delete("notes", "b")
        tx.put("notes", "zzz", {"text": "nobody wrote me", "count": 1})

    # Written straight into the live copy, as a bug or a hand edit would.
    await operator.read_store.release_dead_letters("notes", generation, tamper, [])
    report = await ops.verify("notes")
    assert not report.consistent
    [projection] = report.projections
    assert projection.position == last and projection.error is None
    [notes] = projection.collections
    assert (notes.missing, notes.extra, notes.different) == (1, 1, 1)
    assert (notes.missing_keys, notes.extra_keys) == (["b"], ["zzz"])
    [difference] = notes.differences
    assert difference.key == "a"
    assert [(f.path, f.live, f.expected) for f in difference.fields] == [
        ("text", "tampered", "text of a")
    ]
    assert "1 missing, 1 extra, 1 different" in projection.summary()
    # The scratch copies are gone: the live copy is still the only one.
    state = await operator.read_store.state("notes")
    assert state.generation == generation
    assert await operator.read_store.count("notes") == 3


async def release_after_a_switch_elsewhere(server: App, operator: App) -> None:
    """The operator's App started before the server rebuilt: it takes the new copy first."""
    Notes.broken = {"poison"}
    first = await note(server, "a", "fine")
    await applied(operator, first)
    await server.operations.rebuild("notes")  # in the server's process: a new copy
    parked = await note(server, "a", "poison")
    await applied(operator, parked)
    assert await operator.operations.skip("notes", stream_id="note-a") == 1
    assert await operator.operations.dead_letters() == []
    later = await note(server, "a", "later")
    await applied(operator, later)
    assert await operator.read_store.get("notes", "a") == {"text": "later", "count": 2}


Scenario = Callable[[App, App], Awaitable[None]]

SCENARIOS: list[Scenario] = [
    pause_and_resume,
    retry_and_skip,
    rebuild_while_serving,
    reset_while_serving,
    verify_finds_divergence,
    release_after_a_switch_elsewhere,
]
"""Every scenario, for each backend's test to run."""


@contextlib.asynccontextmanager
async def server_and_operator(events: str, views: str) -> AsyncIterator[tuple[App, App]]:
    """Two Apps over the same stores: the server runs the projection (once it holds its
    lock or lease), the operator runs none, as the command line does."""
    Notes.broken = set()
    server = await bootstrap(
        NOTES, Settings(event_store=events, read_store=views), retry_interval=0.05
    )
    await server.start()
    operator = await bootstrap(
        NOTES, Settings(event_store=events, read_store=views, projections="off")
    )
    try:
        await operator.start()

        async def leased() -> bool:
            return server.runs_projections

        await until(leased, "the server takes the projection's lock or lease")
        assert not operator.runs_projections
        yield server, operator
    finally:
        await operator.close()
        await server.close()
        Notes.broken = set()
