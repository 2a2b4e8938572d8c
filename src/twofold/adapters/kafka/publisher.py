"""Publishing to Kafka.

One topic (default ``twofold``, option ``topic``); the message key is the stream id, so each
stream's events land in one partition and stay in order; ``acks=all``; the headers are the
CloudEvents ones of ``twofold.application.relay.message`` (UTF-8 bytes), the value is the
event's data. The topic is created when missing, with ``partitions`` partitions (default 16)
and ``replicas`` replicas (default 1); an existing topic is used as it is.

The idempotent producer (option ``idempotence``, on by default) lets the broker drop a batch
the producer sent twice after a lost reply, and keeps a partition's order across retries.
Apache Kafka supports it; Tansu 0.6 (the broker of the tests) refuses it, so against Tansu
write ``idempotence=false``: the relay's own rules (one message per stream in flight,
publish again after a failure) keep each stream in order anyway, and consumers drop what
arrives twice by event id.

URL: ``kafka://host:9092[,host2:9092]?topic=twofold&idempotence=true&timeout=5``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)

from twofold.adapters._bus_url import BusUrl, as_bool
from twofold.application.relay.errors import (
    BrokerUnavailableError,
    MessageRefusedError,
    PublishError,
)
from twofold.application.relay.message import BusMessage

__all__ = ["KafkaPublisher", "KafkaSettings", "open_kafka_publisher"]


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "twofold"
    partitions: int = 16
    replicas: int = 1
    idempotence: bool = True
    timeout: float = 5.0
    """Seconds to wait for the acknowledgement before the broker counts as unavailable."""
    max_message_bytes: int = 1048576
    """The producer's ``max_request_size``: a larger message is refused for good."""

    @classmethod
    def from_url(cls, url: str) -> KafkaSettings:
        bus = BusUrl(
            url,
            schemes=("kafka",),
            options={
                "topic": "default twofold",
                "partitions": "when the topic is created, default 16",
                "replicas": "when the topic is created, default 1",
                "idempotence": "the idempotent producer, default true (false for Tansu)",
                "timeout": "seconds to wait for an acknowledgement, default 5",
                "max_message_bytes": "default 1048576",
            },
        )
        return cls(
            bootstrap_servers=bus.parts.netloc.split("@")[-1],
            topic=bus.option("topic", str, cls.topic),
            partitions=bus.positive("partitions", int, cls.partitions),
            replicas=bus.positive("replicas", int, cls.replicas),
            idempotence=bus.option("idempotence", as_bool, cls.idempotence),
            timeout=bus.positive("timeout", float, cls.timeout),
            max_message_bytes=bus.positive("max_message_bytes", int, cls.max_message_bytes),
        )


class KafkaPublisher:
    """A Publisher to one Kafka topic (see the module for keys, headers and settings)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._topic_ready = False
        first = settings.bootstrap_servers.split(",")[0]
        self._destination = f"kafka://{first}/{settings.topic}"

    @property
    def destination(self) -> str:
        return self._destination

    async def open(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.bootstrap_servers,
                acks="all",
                enable_idempotence=self.settings.idempotence,
                request_timeout_ms=int(self.settings.timeout * 1000),
                max_request_size=self.settings.max_message_bytes,
                # A window of messages in flight shares few partitions: room for all of
                # them in one batch per partition, or each send waits for the last to drain.
                max_batch_size=max(self.settings.max_message_bytes, 1 << 18),
                retry_backoff_ms=100,
            )
            try:
                await producer.start()
            except (OSError, KafkaError) as exc:
                await producer.stop()
                raise BrokerUnavailableError(self.destination, _reason(exc)) from exc
            self._producer = producer
        if not self._topic_ready:
            await self._ensure_topic()

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.bootstrap_servers,
            request_timeout_ms=int(self.settings.timeout * 1000),
        )
        try:
            await admin.start()
            if self.settings.topic not in await admin.list_topics():
                topic = NewTopic(
                    self.settings.topic,
                    num_partitions=self.settings.partitions,
                    replication_factor=self.settings.replicas,
                )
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([topic])
        except (OSError, KafkaError) as exc:
            raise BrokerUnavailableError(self.destination, _reason(exc)) from exc
        finally:
            await admin.close()
        self._topic_ready = True

    async def publish(self, message: BusMessage) -> None:
        if self._producer is None or not self._topic_ready:
            await self.open()
        headers = [(k, v.encode()) for k, v in message.headers().items()]
        try:
            await self._producer.send_and_wait(
                self.settings.topic,
                message.body,
                key=message.stream_id.encode(),
                headers=headers,
            )
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise MessageRefusedError(
                self.destination,
                message.event_id,
                f"larger than max_message_bytes ({self.settings.max_message_bytes})",
            ) from exc
        except (OSError, KafkaError) as exc:
            # A broker that lost the topic (memory storage, restarted) gets it again.
            self._topic_ready = False
            raise BrokerUnavailableError(self.destination, _reason(exc)) from exc

    async def publish_many(self, messages: Sequence[BusMessage]) -> list[PublishError | None]:
        """All messages join the producer's batches at once; their acknowledgements are
        awaited together."""
        if self._producer is None or not self._topic_ready:
            try:
                await self.open()
            except PublishError as exc:
                return [exc] * len(messages)
        outcomes: list[PublishError | None] = [None] * len(messages)
        futures: dict[int, asyncio.Future[Any]] = {}
        for index, message in enumerate(messages):
            headers = [(k, v.encode()) for k, v in message.headers().items()]
            try:
                futures[index] = await self._producer.send(
                    self.settings.topic, message.body, key=message.stream_id.encode(),
                    headers=headers,
                )  # fmt: skip
            except (OSError, KafkaError) as exc:
                outcomes[index] = self._failure(message, exc)
        if futures:
            # aiokafka fails each by itself after request_timeout_ms; this bounds it anyway.
            _, pending = await asyncio.wait(futures.values(), timeout=self.settings.timeout * 3)
            for future in pending:
                future.cancel()
        for index, future in futures.items():
            if future.cancelled():
                outcomes[index] = BrokerUnavailableError(self.destination, "no acknowledgement")
                continue
            error = future.exception()
            if error is not None:
                outcomes[index] = self._failure(messages[index], error)
        return outcomes

    def _failure(self, message: BusMessage, exc: BaseException) -> PublishError:
        if isinstance(exc, MessageSizeTooLargeError | RecordTooLargeError):
            return MessageRefusedError(
                self.destination,
                message.event_id,
                f"larger than max_message_bytes ({self.settings.max_message_bytes})",
            )
        if isinstance(exc, OSError | KafkaError):
            self._topic_ready = False
            return BrokerUnavailableError(self.destination, _reason(exc))
        raise exc

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        self._topic_ready = False
        if producer is not None:
            await producer.stop()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def open_kafka_publisher(url: str) -> KafkaPublisher:
    """A publisher for ``kafka://`` URLs (not connected yet: the relay calls ``open``)."""
    return KafkaPublisher(KafkaSettings.from_url(url))
