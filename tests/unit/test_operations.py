"""Operations on one App (the in-memory log, a SQLite read store file): what each answers
and what it refuses. The same operations from a second App: tests/integration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.operations_scenario import Notes, note, until
from tests.unit.bank import BANK, Deposit, OpenAccount
from twofold import App, ProjectionStatus, Service, Settings, ValidationError, bootstrap
from twofold.application.operations import decode_event
from twofold.application.verify import compare_documents
from twofold.domain.messages import Metadata
from twofold.errors import UnknownProjectionError


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    async with await bootstrap(BANK, settings) as running:
        yield running


async def test_status_reports_position_lag_and_level(app: App) -> None:
    opened = await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await app.wait_for_projections(opened.position)
    [report] = await app.operations.status()
    assert (report.name, report.status, report.level) == ("balances", "running", "UP")
    assert (report.position, report.lag_events, report.lag_seconds) == (opened.position, 0, 0.0)
    assert (report.parked, report.attempts, report.error, report.paused) == (0, 0, None, False)


async def test_a_paused_projection_applies_nothing_until_resumed(app: App) -> None:
    opened = await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await app.wait_for_projections(opened.position)
    assert await app.operations.pause("balances") is True
    assert app.runner("balances").paused
    deposited = await app.dispatch(Deposit(account_id="a1", amount=Decimal(5)))
    [report] = await app.operations.status()
    assert (report.status, report.level, report.lag_events) == ("paused", "DEGRADED", 1)
    assert report.position == opened.position
    assert await app.operations.resume("balances") is True
    await app.wait_for_projections(deposited.position)
    assert (await app.read_store.get("balances", "a1") or {})["balance"] == "5"


async def test_unknown_names_and_bad_pages_are_refused(app: App) -> None:
    ops = app.operations
    with pytest.raises(UnknownProjectionError, match="known projections: balances"):
        await ops.pause("nope")
    with pytest.raises(UnknownProjectionError):
        await ops.rebuild("nope")
    with pytest.raises(ValidationError, match="limit"):
        await ops.streams(limit=0)
    with pytest.raises(ValidationError, match="from_version"):
        await ops.stream("account-a1", from_version=0)
    with pytest.raises(ValidationError, match="parked at 7"):
        await ops.dead_letter("balances", 7)
    with pytest.raises(ValidationError, match="not parked"):
        await ops.skip("balances", positions=[3])
    assert (await app.read_store.state("balances")).paused is False


async def test_streams_are_paged_and_events_carry_data_and_metadata(app: App) -> None:
    for owner in ("ann", "bob", "cy"):
        await app.dispatch(
            OpenAccount(account_id=owner, owner=owner),
            Metadata(correlation_id="c-1", causation_id="cause-1"),
        )
    await app.dispatch(Deposit(account_id="bob", amount=Decimal("2.5")))
    first = await app.operations.streams(limit=2)
    rest = await app.operations.streams(after=first[-1].stream_id)
    assert [(s.version, s.last_position) for s in first + rest] == [(1, 1), (2, 4), (1, 3)]
    events = await app.operations.stream(first[1].stream_id)
    assert [e.stream_version for e in events] == [1, 2]
    opened = decode_event(events[0])
    assert opened["type"] == "AccountOpened" and opened["data"]["owner"] == "bob"
    assert opened["metadata"]["correlation_id"] == "c-1"
    assert opened["metadata"]["causation_id"] == "cause-1"
    assert [e.stream_version for e in await app.operations.stream(first[1].stream_id, 2)] == [2]


async def test_rebuild_reports_progress_and_verify_passes_after(app: App) -> None:
    for index in range(5):
        last = await app.dispatch(OpenAccount(account_id=f"a{index}", owner="ann"))
    seen: list[tuple[str, int, int]] = []
    done = await app.operations.rebuild_all(lambda *step: seen.append(step))
    assert done == {"balances": last.position}
    assert seen[-1] == ("balances", last.position, last.position)
    report = await app.operations.verify()
    assert report.consistent and report.projections[0].collections[0].documents == 5


def test_documents_differ_field_by_field_and_by_type() -> None:
    live = {"total": 1, "lines": [{"qty": 2}], "city": "Oslo", "gone": True}
    expected = {"total": 1.0, "lines": [{"qty": 3}, {"qty": 1}], "city": "Oslo", "new": None}
    found = [(f.path, f.live, f.expected) for f in compare_documents(live, expected)]
    assert found == [
        ("total", 1, 1.0),
        ("lines[0].qty", 2, 3),
        ("lines[1]", "<absent>", {"qty": 1}),
        ("new", "<absent>", None),
        ("gone", True, "<absent>"),
    ]
    assert compare_documents(expected, expected) == []


class StoppingNotes(Notes):
    name = "notes"
    on_error = "stop"
    retries = 0


async def test_pausing_a_stopped_projection_needs_no_runner_to_answer(tmp_path: Path) -> None:
    service = Service(name="notes", register=lambda c, q: None, projections=(StoppingNotes,))
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    Notes.broken = {"bad"}
    try:
        async with await bootstrap(service, settings) as app:
            await note(app, "a", "bad")
            await until_stored(app, ProjectionStatus.STOPPED)
            assert await app.operations.pause("notes", wait=30) is True
            [report] = await app.operations.status()
            assert (report.status, report.level, report.paused) == ("stopped", "DOWN", True)
    finally:
        Notes.broken = set()


async def until_stored(app: App, status: ProjectionStatus) -> None:
    async def reached() -> bool:
        return (await app.read_store.state("notes")).status is status

    await until(reached, f"notes {status.value}")
