"""Reading a relay's Redis stream with a consumer group.

The group (option ``group``, default ``twofold``) is created at the stream's start when
missing. Each member names itself (option ``consumer``, default ``<group>-1``): give every
member a stable name, because a member that restarts first takes back the entries it had
received and not acknowledged. Members of a group share the entries, but Redis does not keep
one stream id's entries on one member: give each group one member when the runner must see
each stream in order (it stops on a gap rather than apply out of order). With
``split=category`` on the relay, read one category's key with ``stream=twofold:order``.

Redis 7 does not drop duplicates: the runner does, by stream version (or event id).

URL: ``redis://host:6379?stream=twofold&group=orders-views&consumer=orders-views-1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from twofold.adapters._bus_url import BusUrl
from twofold.application.relay.errors import BrokerUnavailableError
from twofold.application.relay.message import decode_message
from twofold.application.relay.source import Delivery

__all__ = ["RedisStreamsSource", "open_redis_source"]


class RedisStreamsSource:
    def __init__(
        self, url: str, *, stream: str = "twofold", group: str = "twofold", consumer: str = ""
    ) -> None:
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{group}-1"
        self._client: aioredis.Redis | None = None
        self._group_ready = False
        self._backlog = True  # first take back what this member received before
        bus = BusUrl(url, schemes=("redis", "rediss"), options={})
        self._destination = f"{bus.public}/{stream}"

    @property
    def destination(self) -> str:
        return self._destination

    async def open(self) -> None:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.url, socket_connect_timeout=5.0)
        try:
            if not self._group_ready:
                try:
                    await self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
                except redis.exceptions.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._group_ready = True
        except (OSError, redis.exceptions.RedisError) as exc:
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc

    async def receive(self, *, max_messages: int, timeout: float) -> list[Delivery]:
        if self._client is None or not self._group_ready:
            await self.open()
        assert self._client is not None
        start = "0" if self._backlog else ">"
        try:
            # RESP2's reply: [[key, [(entry id, {field: value})...]]]
            reply: Any = await self._client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: start},
                count=max_messages,
                block=None if self._backlog else max(1, int(timeout * 1000)),
            )
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the server lost the group (restarted without data)
                self._group_ready = False
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc
        except (OSError, redis.exceptions.RedisError) as exc:
            # The reply may be lost after Redis handed the entries to this member: read the
            # member's pending entries first when it is back.
            self._backlog = True
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc
        entries = reply[0][1] if reply else []
        if self._backlog and not entries:
            self._backlog = False
            return await self.receive(max_messages=max_messages, timeout=timeout)
        deliveries = []
        for entry_id, fields in entries:
            headers = {k.decode(): v for k, v in fields.items() if k != b"data"}
            deliveries.append(Delivery(decode_message(headers, fields.get(b"data", b"")), entry_id))
        return deliveries

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        assert self._client is not None
        try:
            await self._client.xack(self.stream, self.group, *[d.handle for d in deliveries])
        except (OSError, redis.exceptions.RedisError) as exc:
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        self._group_ready = False
        if client is not None:
            await client.aclose()


def open_redis_source(url: str) -> RedisStreamsSource:
    """A source for ``redis://`` URLs: options ``stream``, ``group``, ``consumer``."""
    bus = BusUrl(
        url,
        schemes=("redis", "rediss"),
        options={
            "stream": "the key, default twofold",
            "group": "the consumer group, default twofold",
            "consumer": "this member's stable name, default <group>-1",
        },
    )
    return RedisStreamsSource(
        bus.parts._replace(query="").geturl(),
        stream=bus.option("stream", str, "twofold"),
        group=bus.option("group", str, "twofold"),
        consumer=bus.option("consumer", str, ""),
    )
