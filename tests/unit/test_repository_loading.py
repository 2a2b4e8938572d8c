"""The Repository's fast paths give the same answers as the plain ones."""

from __future__ import annotations

import os
import warnings
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.bank import Account, MoneyDeposited
from twofold import Codec, Event, Repository, uuid7
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.errors import SerializationError
from twofold.records import StreamData


class NarrowStore(InMemoryEventStore):
    """The in-memory store with the optional narrow read (StreamDataReader)."""

    def __init__(self) -> None:
        super().__init__()
        self.narrow_reads = 0
        self.version_reads = 0

    async def read_stream_data(self, stream_id: str, *, from_version: int = 1) -> list[StreamData]:
        self.narrow_reads += 1
        records = await self.read_stream(stream_id, from_version=from_version)
        return [(r.stream_version, r.type, r.schema_version, r.data) for r in records]

    async def stream_version(self, stream_id: str) -> int:
        self.version_reads += 1
        return await super().stream_version(stream_id)


async def _account(repository: Repository, deposits: int) -> None:
    account = Account("a1")
    account.open("ann")
    for n in range(deposits):
        account.deposit(Decimal(n + 1))
    await repository.save(account)


async def test_load_reads_narrowly_when_the_store_can() -> None:
    store = NarrowStore()
    repository = Repository(store, Codec())
    await _account(repository, deposits=3)  # 4 events; a snapshot at version 5 is not taken
    account = await repository.get(Account, "a1")
    assert (account.owner, account.balance, account.version) == ("ann", Decimal(6), 4)
    assert store.narrow_reads == 1


async def test_narrow_and_plain_loads_agree_after_a_snapshot() -> None:
    narrow, plain = NarrowStore(), InMemoryEventStore()
    for store in (narrow, plain):
        await _account(Repository(store, Codec()), deposits=11)  # snapshot at 12 - 12 % 5
    loaded = [await Repository(store, Codec()).get(Account, "a1") for store in (narrow, plain)]
    assert [(a.owner, a.balance, a.version) for a in loaded] == [("ann", Decimal(66), 12)] * 2


async def test_exists_asks_the_store_until_a_stream_is_known_to_exist() -> None:
    store = NarrowStore()
    repository = Repository(store, Codec())
    assert not await repository.exists(Account, "a1")
    assert not await repository.exists(Account, "a1")
    assert store.version_reads == 2  # a missing stream is asked for every time
    await store.append(
        "Account-a1",
        [Codec([MoneyDeposited]).new_event(MoneyDeposited(account_id="a1", amount=Decimal(1)))],
        expected_version=0,
    )
    assert await repository.exists(Account, "a1")
    assert await repository.exists(Account, "a1")
    assert store.version_reads == 3  # events are never deleted: once there, always there


def test_uuid7_ids_stay_unique_and_differ_across_a_fork() -> None:
    ids = {uuid7() for _ in range(5000)}
    assert len(ids) == 5000 and {i.version for i in ids} == {7}
    read, write = os.pipe()
    uuid7()  # the parent holds a block of random bytes now
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads; the child only
        # draws one id and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, uuid7().bytes)
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 16)
    os.close(read)
    os.close(write)
    assert child[6:] != uuid7().bytes[6:]  # the random parts: the child drew a fresh block


async def test_sqlite_narrow_read_returns_what_read_stream_does(tmp_path: Path) -> None:
    async with SQLiteEventStore(tmp_path / "events.db") as store:
        repository = Repository(store, Codec())
        await _account(repository, deposits=6)
        records = await store.read_stream("Account-a1", from_version=3)
        rows = await store.read_stream_data("Account-a1", from_version=3)
        assert rows == [(r.stream_version, r.type, r.schema_version, r.data) for r in records]
        assert await store.read_stream_data("Account-nobody") == []
        account = await repository.get(Account, "a1")
        assert (account.balance, account.version) == (Decimal(21), 7)


class Renamed(Event, type_name="bench.Renamed", version=2):
    name: str
    by: str


def test_replay_upcasts_old_rows_and_names_what_does_not_fit() -> None:
    codec = Codec([Renamed])
    codec.add_upcaster("bench.Renamed", from_version=1, fn=lambda d: {**d, "by": "unknown"})
    applied: list[tuple[Event, int]] = []
    rows: list[StreamData] = [
        (1, "bench.Renamed", 1, b'{"name": "a"}'),
        (2, "bench.Renamed", 2, b'{"name": "b", "by": "ann"}'),
        (3, "bench.Renamed", 1, b'{"name": "c"}'),
    ]
    codec.replay(rows, lambda event, version: applied.append((event, version)))
    assert applied == [
        (Renamed(name="a", by="unknown"), 1),
        (Renamed(name="b", by="ann"), 2),
        (Renamed(name="c", by="unknown"), 3),
    ]
    with pytest.raises(SerializationError, match="does not fit"):
        codec.replay([(4, "bench.Renamed", 2, b'{"name": 5, "by": "x"}')], lambda e, v: None)
    with pytest.raises(SerializationError, match="not registered"):
        codec.replay([(5, "bench.Unknown", 1, b"{}")], lambda e, v: None)
