"""Publishing to Redis Streams.

Layout: one Redis stream per service by default, key ``twofold`` (option ``stream``). With
``split=category``, one Redis stream per category instead, key ``{stream}:{category}``, where
the category is the stream id up to its first ``-`` (``order-17`` is in ``order``; a stream id
without ``-`` is its own category), as in EventStoreDB. Each entry's fields are the
CloudEvents headers of ``twofold.application.relay.message`` plus ``data``, the event's data.

Redis 7 has no de-duplication on the broker: a message published again (after a lost reply)
is a second entry, and consumers drop it by ``ce_id``. A message over ``max_message_bytes``
(default 1 MiB) is refused for good. Entries are kept until trimmed; ``maxlen`` trims each
stream to about that many entries (``XADD MAXLEN ~``): only set it if every consumer keeps up.

Concurrent ``publish`` calls share one pipelined round trip (entries in call order).

URL: ``redis://[user:password@]host:6379[/db]?stream=twofold&split=service&timeout=5``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from twofold.adapters._bus_url import BusUrl
from twofold.application.relay.errors import (
    BrokerUnavailableError,
    MessageRefusedError,
    PublishError,
)
from twofold.application.relay.message import BusMessage
from twofold.errors import ConfigurationError

__all__ = ["RedisStreamsPublisher", "RedisStreamsSettings", "category", "open_redis_publisher"]


def category(stream_id: str) -> str:
    """The category of a stream id: up to its first ``-``."""
    return stream_id.split("-", 1)[0]


def _split(text: str) -> str:
    if text not in ("service", "category"):
        raise ValueError("write service or category")
    return text


@dataclasses.dataclass(frozen=True)
class RedisStreamsSettings:
    url: str = "redis://127.0.0.1:6379"
    stream: str = "twofold"
    split: str = "service"
    timeout: float = 5.0
    max_message_bytes: int = 1048576
    maxlen: int | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisStreamsSettings:
        bus = BusUrl(
            url,
            schemes=("redis", "rediss"),
            options={
                "stream": "the key, or the key prefix with split=category; default twofold",
                "split": "service (one stream) or category; default service",
                "timeout": "seconds to wait for a reply, default 5",
                "max_message_bytes": "default 1048576",
                "maxlen": "trim each stream to about this many entries; default none",
            },
        )
        maxlen = bus.option("maxlen", int, 0)
        if maxlen < 0:
            raise ConfigurationError(f"option maxlen of {bus.public} must be 0 or more")
        return cls(
            url=bus.parts._replace(query="").geturl(),
            stream=bus.option("stream", str, cls.stream),
            split=bus.option("split", _split, cls.split),
            timeout=bus.positive("timeout", float, cls.timeout),
            max_message_bytes=bus.positive("max_message_bytes", int, cls.max_message_bytes),
            maxlen=maxlen or None,
        )

    def key(self, stream_id: str) -> str:
        if self.split == "category":
            return f"{self.stream}:{category(stream_id)}"
        return self.stream


_Pending = tuple[BusMessage, dict[Any, Any], "asyncio.Future[None]"]


class RedisStreamsPublisher:
    """A Publisher to Redis Streams (see the module for the layout and the settings)."""

    def __init__(self, settings: RedisStreamsSettings) -> None:
        self.settings = settings
        self._client: aioredis.Redis | None = None
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        bus = BusUrl(settings.url, schemes=("redis", "rediss"), options={})
        self._destination = f"{bus.public}/{settings.stream}"

    @property
    def destination(self) -> str:
        return self._destination

    async def open(self) -> None:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.settings.url,
                socket_timeout=self.settings.timeout,
                socket_connect_timeout=self.settings.timeout,
            )
        try:
            await self._client.ping()
        except (OSError, redis.exceptions.RedisError) as exc:
            raise BrokerUnavailableError(self.destination, _reason(exc)) from exc

    async def publish_many(self, messages: Sequence[BusMessage]) -> list[PublishError | None]:
        """One pipelined round trip for all of them (shared with concurrent ``publish``)."""
        outcomes: list[PublishError | None] = [None] * len(messages)
        futures: dict[int, asyncio.Future[None]] = {}
        if self._client is None:
            try:
                await self.open()
            except PublishError as exc:
                return [exc] * len(messages)
        for index, message in enumerate(messages):
            queued = self._enqueue(message)
            if isinstance(queued, PublishError):
                outcomes[index] = queued
            else:
                futures[index] = queued
        if futures:
            await asyncio.wait(futures.values())
        for index, future in futures.items():
            error = future.exception()
            if isinstance(error, PublishError):
                outcomes[index] = error
            elif error is not None:
                raise error
        return outcomes

    async def publish(self, message: BusMessage) -> None:
        if self._client is None:
            await self.open()
        queued = self._enqueue(message)
        if isinstance(queued, PublishError):
            raise queued
        await queued

    def _enqueue(self, message: BusMessage) -> asyncio.Future[None] | PublishError:
        fields: dict[Any, Any] = message.headers()
        size = len(message.body) + sum(len(k) + len(v) for k, v in fields.items())
        if size > self.settings.max_message_bytes:
            return MessageRefusedError(
                self.destination,
                message.event_id,
                f"{size} bytes, more than max_message_bytes ({self.settings.max_message_bytes})",
            )
        fields["data"] = message.body
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((message, fields, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="redis-streams-publish")
        return future

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._send(batch)
            except (OSError, redis.exceptions.RedisError) as exc:
                failure = BrokerUnavailableError(self.destination, _reason(exc))
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
            except BaseException as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                raise
            else:
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _send(self, batch: list[_Pending]) -> None:
        client = self._client
        if client is None:
            raise BrokerUnavailableError(self.destination, "the publisher is closed")
        pipe = client.pipeline(transaction=False)
        maxlen = self.settings.maxlen
        for message, fields, _ in batch:
            if maxlen is None:
                pipe.xadd(self.settings.key(message.stream_id), fields)
            else:
                pipe.xadd(
                    self.settings.key(message.stream_id), fields, maxlen=maxlen, approximate=True
                )
        await pipe.execute()

    async def close(self) -> None:
        client, self._client = self._client, None
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if client is not None:
            await client.aclose()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def open_redis_publisher(url: str) -> RedisStreamsPublisher:
    """A publisher for ``redis://`` URLs (not connected yet: the relay calls ``open``)."""
    return RedisStreamsPublisher(RedisStreamsSettings.from_url(url))
