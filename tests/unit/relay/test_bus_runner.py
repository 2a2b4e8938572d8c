"""The bus-fed runner: exactly once into the views, in order per stream, or a clear stop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from tests.unit.relay.fakes import FakeSource
from tests.unit.relay.ledger import Ledger, ParkingLedger
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.relay.errors import BrokerUnavailableError, MessageGapError
from twofold.application.relay.message import BusMessage
from twofold.application.relay.remote import BusProjectionRunner
from twofold.application.relay.source import Delivery
from twofold.application.views import ProjectionStatus
from twofold.codec import Codec
from twofold.errors import ProjectionStoppedError
from twofold.records import RecordedEvent, uuid7


class Log:
    """Messages as a relay would number them."""

    def __init__(self) -> None:
        self.position = 0
        self.versions: dict[str, int] = {}

    def deposit(self, account: str, amount: int = 1) -> Delivery:
        self.position += 1
        version = self.versions[account] = self.versions.get(account, 0) + 1
        record = RecordedEvent(
            event_id=uuid7(),
            stream_id=account,
            stream_version=version,
            position=self.position,
            type="Deposited",
            schema_version=1,
            data=msgspec.json.encode({"account": account, "amount": amount}),
            metadata=b"{}",
            recorded_at=datetime.now(UTC),
        )
        return Delivery(BusMessage(record=record, sequence=self.position))


@pytest.fixture
async def views(tmp_path: Path) -> AsyncIterator[SQLiteReadStore]:
    store = await SQLiteReadStore.open(tmp_path / "views.db")
    yield store
    await store.close()


def runner(
    views: SQLiteReadStore, source: FakeSource, projection: Ledger | None = None
) -> BusProjectionRunner:
    return BusProjectionRunner(
        projection or Ledger(), source=source, read_store=views, codec=Codec()
    )


async def test_each_event_is_applied_once_in_order_and_acknowledged_after_the_commit(
    views: SQLiteReadStore,
) -> None:
    log, source = Log(), FakeSource()
    batch = [log.deposit("a"), log.deposit("b"), log.deposit("a", 5)]
    worker = runner(views, source)
    await worker.start()
    await worker.process(batch)
    await worker.process([batch[1], batch[2], log.deposit("b", 2)])  # redelivered, then new
    assert await views.get("ledger_accounts", "a") == {"balance": 6, "versions": [1, 2]}
    assert await views.get("ledger_accounts", "b") == {"balance": 3, "versions": [1, 2]}
    assert (worker.applied, worker.duplicates) == (4, 2)
    assert source.acked == [1, 2, 3, 2, 3, 4]
    assert (await views.state("ledger")).checkpoint == 4
    assert worker.positions.position("ledger") == 4


async def test_a_restarted_worker_drops_what_it_applied_before(views: SQLiteReadStore) -> None:
    log, source = Log(), FakeSource()
    batch = [log.deposit("a"), log.deposit("a")]
    first = runner(views, source)
    await first.start()
    await first.process(batch)
    again = runner(views, source)  # a crash after the commit, before the acknowledgement
    await again.start()
    await again.process([*batch, log.deposit("a")])
    assert await views.get("ledger_accounts", "a") == {"balance": 3, "versions": [1, 2, 3]}
    assert again.duplicates == 2


async def test_a_gap_stops_the_worker_with_a_clear_error_after_what_came_before(
    views: SQLiteReadStore,
) -> None:
    log, source = Log(), FakeSource()
    first, _lost, third = log.deposit("a"), log.deposit("a"), log.deposit("a")
    other = log.deposit("b")
    worker = runner(views, source)
    await worker.start()
    with pytest.raises(MessageGapError) as gap:
        await worker.process([other, first, third])
    assert (gap.value.stream_id, gap.value.expected, gap.value.received) == ("a", 2, 3)
    assert "events 2..2 are missing" in str(gap.value)
    assert await views.get("ledger_accounts", "a") == {"balance": 1, "versions": [1]}
    assert await views.get("ledger_accounts", "b") == {"balance": 1, "versions": [1]}
    assert source.acked == []  # nothing acknowledged: the messages stay on the broker
    state = await views.state("ledger")
    assert state.status is ProjectionStatus.STOPPED and "missing" in (state.error or "")
    with pytest.raises(ProjectionStoppedError):
        await runner(views, source).run()


async def test_a_skip_marker_counts_the_version_without_applying_it(
    views: SQLiteReadStore,
) -> None:
    log, source = Log(), FakeSource()
    first, skipped, third = log.deposit("a"), log.deposit("a", 100), log.deposit("a")
    marker = Delivery(BusMessage(record=skipped.message.record, sequence=9, skipped=True))
    worker = runner(views, source)
    await worker.start()
    await worker.process([first, marker, third])
    assert await views.get("ledger_accounts", "a") == {"balance": 2, "versions": [1, 3]}


async def test_a_failing_event_parks_with_the_rest_of_its_stream_when_the_policy_says_park(
    views: SQLiteReadStore,
) -> None:
    log, source = Log(), FakeSource()
    batch = [log.deposit("a"), log.deposit("a", -1), log.deposit("b"), log.deposit("a")]
    worker = runner(views, source, ParkingLedger())
    await worker.start()
    await worker.process(batch)
    assert await views.get("ledger_accounts", "a") == {"balance": 1, "versions": [1]}
    assert await views.get("ledger_accounts", "b") == {"balance": 1, "versions": [1]}
    letters = await views.dead_letters("ledger", worker.generation)
    assert [(d.stream_id, d.position) for d in letters] == [("a", 2), ("a", 4)]
    assert source.acked == [1, 2, 3, 4]


class UnackingSource(FakeSource):
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        raise BrokerUnavailableError(self.destination, "connection reset")


async def test_a_failed_acknowledgement_leaves_the_views_applied_and_the_worker_going(
    views: SQLiteReadStore,
) -> None:
    log, source = Log(), UnackingSource()
    batch = [log.deposit("a")]
    worker = runner(views, source)
    await worker.start()
    await worker.process(batch)
    await worker.process([*batch, log.deposit("a")])  # delivered again, with the next one
    assert await views.get("ledger_accounts", "a") == {"balance": 2, "versions": [1, 2]}
    assert not worker.stopped
