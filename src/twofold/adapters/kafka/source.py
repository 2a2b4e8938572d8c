"""Reading a relay's Kafka topic with a consumer group.

Members of one group (option ``group``, default ``twofold``) share the topic's partitions;
the key is the stream id, so each stream is in one partition and reaches one member, in
order. Offsets are committed only by ``ack``, after the runner committed its views: a member
that dies leaves its partitions, from the last committed offset, to the others.

URL: ``kafka://host:9092?topic=twofold&group=orders-views``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from twofold.adapters._bus_url import BusUrl
from twofold.adapters.kafka.publisher import KafkaPublisher, KafkaSettings
from twofold.application.relay.errors import BrokerUnavailableError
from twofold.application.relay.message import decode_message
from twofold.application.relay.source import Delivery

__all__ = ["KafkaSource", "open_kafka_source"]


class KafkaSource:
    def __init__(
        self, settings: KafkaSettings, *, group: str = "twofold", fetch_wait_ms: int = 50
    ) -> None:
        self.settings = settings
        self.group = group
        self.fetch_wait_ms = fetch_wait_ms
        self._consumer: Any = None
        self._destination = KafkaPublisher(settings).destination

    @property
    def destination(self) -> str:
        return self._destination

    async def open(self) -> None:
        if self._consumer is not None:
            return
        # The relay makes the topic; a worker that starts first makes it the same way.
        publisher = KafkaPublisher(self.settings)
        try:
            await publisher.open()
        finally:
            await publisher.close()
        consumer = AIOKafkaConsumer(
            self.settings.topic,
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The broker may hold a fetch until this much time passed (Tansu does, even when
            # data came): a message's lag to the views includes it.
            fetch_max_wait_ms=self.fetch_wait_ms,
            request_timeout_ms=max(int(self.settings.timeout * 1000), 10000),
        )
        try:
            await consumer.start()
        except (OSError, KafkaError) as exc:
            await consumer.stop()
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc
        self._consumer = consumer

    async def receive(self, *, max_messages: int, timeout: float) -> list[Delivery]:
        if self._consumer is None:
            await self.open()
        try:
            batches = await self._consumer.getmany(
                timeout_ms=int(timeout * 1000), max_records=max_messages
            )
        except (OSError, KafkaError) as exc:
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc
        deliveries = []
        for tp, records in batches.items():
            for record in records:
                message = decode_message(dict(record.headers), record.value or b"")
                deliveries.append(Delivery(message, (tp, record.offset)))
        return deliveries

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for delivery in deliveries:
            tp, offset = delivery.handle
            offsets[tp] = max(offsets.get(tp, 0), offset + 1)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (OSError, KafkaError) as exc:
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


def open_kafka_source(url: str) -> KafkaSource:
    """A source for ``kafka://`` URLs: the publisher's options plus ``group`` and
    ``fetch_wait_ms`` (how long the broker may hold a fetch, default 50)."""
    own = ("group", "fetch_wait_ms")
    bus = BusUrl(url, schemes=("kafka",), options={**dict.fromkeys(own, ""), **_PUBLISHER_OPTIONS})
    rest = "&".join(f"{k}={v}" for k, v in bus.query.items() if k not in own)
    settings = KafkaSettings.from_url(bus.parts._replace(query=rest).geturl())
    return KafkaSource(
        settings,
        group=bus.option("group", str, "twofold"),
        fetch_wait_ms=bus.positive("fetch_wait_ms", int, 50),
    )


_PUBLISHER_OPTIONS = {
    k: ""
    for k in ("topic", "partitions", "replicas", "idempotence", "timeout", "max_message_bytes")
}
