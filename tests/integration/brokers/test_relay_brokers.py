"""The relay from a SQLite event store to each real broker: the log arrives whole, in order."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.integration.brokers.servers import NatsServer, RedisServer, TansuServer
from tests.integration.brokers.test_kafka_publisher import bootstrap, read_topic
from tests.integration.brokers.test_nats_publisher import read_stream
from tests.integration.brokers.test_redis_publisher import read_streams
from twofold.adapters.kafka import open_kafka_publisher
from twofold.adapters.nats import open_nats_publisher
from twofold.adapters.redis_streams import open_redis_publisher
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.relay_store import SQLiteRelayStore
from twofold.application.relay.core import Relay
from twofold.application.relay.message import BusMessage
from twofold.application.relay.publisher import Publisher
from twofold.records import ANY
from twofold.testing.event_store_contract import new_event, read_everything

DEADLINE = 120.0  # bounds a broken test; no figure depends on it


async def relay_everything(folder: Path, publisher: Publisher) -> list[int]:
    """Write 200 events over 10 streams, relay them, return the log's positions."""
    events = await SQLiteEventStore.open(folder / "events.db")
    store = await SQLiteRelayStore.open(folder / "events.db")
    relay = Relay(events, publisher, store, source="shop", window=32)
    task = asyncio.create_task(relay.run())
    try:
        for n in range(20):
            for s in range(10):
                await events.append(
                    f"order-{s}", [new_event(data=b'{"n":%d}' % n)], expected_version=ANY
                )
        await asyncio.wait_for(relay.reached(await events.head_position()), DEADLINE)
        return [r.position for r in await read_everything(events)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await relay.close()
        await store.close()
        await events.close()


def assert_whole_and_in_order(held: list[BusMessage], positions: list[int]) -> None:
    assert sorted(m.record.position for m in held) == positions
    assert sorted(m.sequence for m in held) == list(range(1, len(positions) + 1))
    for s in range(10):
        versions = [m.record.stream_version for m in held if m.stream_id == f"order-{s}"]
        assert versions == list(range(1, 21))


async def test_relay_to_nats_jetstream(tmp_path: Path, nats_server: NatsServer) -> None:
    positions = await relay_everything(tmp_path, open_nats_publisher(nats_server.url))
    assert_whole_and_in_order([m for _, m in await read_stream(nats_server.url)], positions)


async def test_relay_to_kafka(tmp_path: Path, tansu_server: TansuServer) -> None:
    publisher = open_kafka_publisher(f"{tansu_server.url}?idempotence=false&partitions=4")
    positions = await relay_everything(tmp_path, publisher)
    held = [m for _, _, m in await read_topic(bootstrap(tansu_server))]
    assert_whole_and_in_order(held, positions)


async def test_relay_to_redis_streams(tmp_path: Path, redis_server: RedisServer) -> None:
    positions = await relay_everything(tmp_path, open_redis_publisher(redis_server.url))
    held = (await read_streams(redis_server.url))["twofold"]
    assert_whole_and_in_order(held, positions)
