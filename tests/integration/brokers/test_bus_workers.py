"""Bus-fed workers end to end: a relay publishes the log, workers apply it from the broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from tests.integration.brokers.servers import NatsServer, TansuServer
from tests.unit.relay.ledger import Deposited, Ledger
from twofold.adapters.kafka import open_kafka_publisher
from twofold.adapters.kafka.source import open_kafka_source
from twofold.adapters.nats import open_nats_publisher
from twofold.adapters.nats.source import open_nats_source
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.adapters.sqlite.relay_store import SQLiteRelayStore
from twofold.application.relay.core import Relay
from twofold.application.relay.publisher import Publisher
from twofold.application.relay.remote import BusProjectionRunner
from twofold.application.relay.source import BusSource
from twofold.codec import Codec
from twofold.records import ANY

DEADLINE = 120.0  # bounds a broken test; no figure depends on it
ACCOUNTS = 12
EVENTS = 600


async def write(events: SQLiteEventStore, codec: Codec) -> int:
    position = 0
    for n in range(EVENTS):
        account = f"acct-{n % ACCOUNTS}"
        event = codec.new_event(Deposited(account=account, amount=1))
        position = (await events.append(account, [event], expected_version=ANY)).position
    return position


async def relay_and_apply(
    tmp_path: Path,
    publisher: Publisher,
    sources: list[BusSource],
    ready: Callable[[], bool] = lambda: True,
) -> list[BusProjectionRunner]:
    codec = Codec([Deposited])
    events = await SQLiteEventStore.open(tmp_path / "events.db")
    relay_store = await SQLiteRelayStore.open(tmp_path / "events.db")
    views = [await SQLiteReadStore.open(tmp_path / "views.db") for _ in sources]
    relay = Relay(events, publisher, relay_store, window=32)
    workers = [
        BusProjectionRunner(Ledger(), source=s, read_store=v, codec=codec, receive_timeout=0.1)
        for s, v in zip(sources, views, strict=True)
    ]
    tasks = [asyncio.create_task(relay.run())] + [asyncio.create_task(w.run()) for w in workers]
    try:
        for _ in range(int(DEADLINE / 0.05)):  # polled with a deadline
            if ready():
                break
            await asyncio.sleep(0.05)
        await write(events, codec)
        for _ in range(int(DEADLINE / 0.05)):  # polled with a deadline
            if sum(w.applied for w in workers) >= EVENTS or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        for task in tasks:
            if task.done():
                task.result()  # surface a crash
        for n in range(ACCOUNTS):
            view = await views[0].get("ledger_accounts", f"acct-{n}")
            assert view == {"balance": EVENTS // ACCOUNTS, "versions": list(range(1, 51))}
        return workers
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await relay.close()
        for source in sources:
            await source.close()
        for store in views:
            await store.close()
        await relay_store.close()
        await events.close()


async def test_a_nats_worker_applies_every_event_once_in_order(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    source = open_nats_source(f"{nats_server.url}?group=ledger")
    [worker] = await relay_and_apply(tmp_path, open_nats_publisher(nats_server.url), [source])
    assert worker.applied == EVENTS


async def test_kafka_workers_of_one_group_share_the_work_and_keep_each_stream_in_order(
    tmp_path: Path, tansu_server: TansuServer
) -> None:
    url = f"{tansu_server.url}?idempotence=false&partitions=4"
    sources = [open_kafka_source(f"{url}&group=ledger") for _ in range(2)]

    def both_assigned() -> bool:  # the group has balanced the 4 partitions over both
        consumers = [source._consumer for source in sources]
        sets = [c.assignment() if c is not None else set() for c in consumers]
        return all(sets) and sum(len(s) for s in sets) == 4

    workers = await relay_and_apply(
        tmp_path, open_kafka_publisher(url), list[BusSource](sources), both_assigned
    )
    assert sum(w.applied for w in workers) == EVENTS
    assert all(w.applied > 0 for w in workers)  # both members took partitions
