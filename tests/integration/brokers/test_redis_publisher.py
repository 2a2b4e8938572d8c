"""The Redis Streams publisher passes the Publisher contract, against a redis-server."""

from __future__ import annotations

from typing import cast

import pytest
import redis.asyncio as aioredis

from tests.integration.brokers.servers import RedisServer
from twofold.adapters.redis_streams import (
    RedisStreamsPublisher,
    RedisStreamsSettings,
    open_redis_publisher,
)
from twofold.application.relay.message import BusMessage, decode_message
from twofold.application.relay.publisher import Publisher
from twofold.errors import ConfigurationError
from twofold.testing.publisher_contract import PublisherContract, bus_message


async def read_streams(url: str, pattern: str = "twofold*") -> dict[str, list[BusMessage]]:
    client = aioredis.Redis.from_url(url)
    try:
        held: dict[str, list[BusMessage]] = {}
        keys = cast(list[bytes], await client.keys(pattern))  # no decode_responses: bytes
        for key in sorted(keys):
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(key))
            held[key.decode()] = [
                decode_message(
                    {k.decode(): v for k, v in fields.items() if k != b"data"}, fields[b"data"]
                )
                for _, fields in entries
            ]
        return held
    finally:
        await client.aclose()


class TestRedisStreamsPublisher(PublisherContract):
    @pytest.fixture(autouse=True)
    def _broker(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    async def make_publisher(self, *, max_message_bytes: int) -> Publisher:
        return RedisStreamsPublisher(
            RedisStreamsSettings(
                url=self.server.url, timeout=2.0, max_message_bytes=max_message_bytes
            )
        )

    async def read_back(self) -> list[BusMessage]:
        return (await read_streams(self.server.url)).get("twofold", [])

    def stop_broker(self) -> None:
        self.server.stop()

    def start_broker(self) -> None:
        self.server.start()


async def test_split_by_category_writes_one_redis_stream_per_category(
    redis_server: RedisServer,
) -> None:
    publisher = open_redis_publisher(f"{redis_server.url}?stream=shop&split=category")
    await publisher.open()
    try:
        placed = bus_message("order-1")
        joined = bus_message("user-9")
        odd = bus_message("singleton")
        for message in (placed, joined, odd):
            await publisher.publish(message)
    finally:
        await publisher.close()
    assert await read_streams(redis_server.url, "shop*") == {
        "shop:order": [placed],
        "shop:user": [joined],
        "shop:singleton": [odd],
    }


def test_url_options_are_checked() -> None:
    publisher = open_redis_publisher("redis://ann:pw@cache.internal:6379/2?stream=orders")
    assert publisher.destination == "redis://cache.internal:6379/2/orders"
    with pytest.raises(ConfigurationError, match="split"):
        open_redis_publisher("redis://127.0.0.1?split=aggregate")
    with pytest.raises(ConfigurationError, match="unknown option"):
        open_redis_publisher("redis://127.0.0.1?max_len=3")
