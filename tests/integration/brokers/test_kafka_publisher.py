"""The Kafka publisher passes the Publisher contract, against Tansu (Kafka-compatible)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from tests.integration.brokers.servers import TansuServer
from twofold.adapters.kafka import KafkaPublisher, KafkaSettings, open_kafka_publisher
from twofold.application.relay.message import BusMessage, decode_message
from twofold.application.relay.publisher import Publisher
from twofold.errors import ConfigurationError
from twofold.testing.publisher_contract import PublisherContract, bus_message


async def read_topic(bootstrap: str, topic: str = "twofold") -> list[tuple[bytes, int, BusMessage]]:
    """(key, partition, message) of everything the topic holds, partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        held = []
        for tp in sorted(partitions, key=lambda tp: tp.partition):
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    message = decode_message(dict(record.headers), record.value)
                    held.append((record.key, record.partition, message))
        return held
    finally:
        await consumer.stop()


def bootstrap(server: TansuServer) -> str:
    return f"127.0.0.1:{server.port}"


class TestKafkaPublisher(PublisherContract):
    @pytest.fixture(autouse=True)
    def _broker(self, tansu_server: TansuServer) -> None:
        self.server = tansu_server

    async def make_publisher(self, *, max_message_bytes: int) -> Publisher:
        return KafkaPublisher(
            KafkaSettings(
                bootstrap_servers=bootstrap(self.server),
                idempotence=False,  # Tansu refuses the idempotent producer
                partitions=4,
                timeout=2.0,
                max_message_bytes=max_message_bytes,
            )
        )

    async def read_back(self) -> list[BusMessage]:
        return [message for _, _, message in await read_topic(bootstrap(self.server))]

    def stop_broker(self) -> None:
        self.server.stop()

    def start_broker(self) -> None:
        self.server.start()


async def test_the_key_is_the_stream_id_so_a_stream_stays_in_one_partition(
    tansu_server: TansuServer,
) -> None:
    publisher = open_kafka_publisher(f"{tansu_server.url}?idempotence=false&partitions=4")
    await publisher.open()
    try:
        for n in range(1, 41):
            await publisher.publish(bus_message(f"order-{n % 8}", n, position=n, sequence=n))
    finally:
        await publisher.close()
    held = await read_topic(bootstrap(tansu_server))
    assert len(held) == 40
    partitions: dict[str, set[int]] = {}
    for key, partition, message in held:
        assert key == message.stream_id.encode()
        partitions.setdefault(message.stream_id, set()).add(partition)
    assert all(len(p) == 1 for p in partitions.values())
    assert len(set().union(*partitions.values())) > 1


def test_the_idempotent_producer_is_on_unless_the_url_turns_it_off() -> None:
    assert open_kafka_publisher("kafka://127.0.0.1:9092").settings.idempotence is True
    off = open_kafka_publisher("kafka://127.0.0.1:9092?idempotence=false")
    assert off.settings.idempotence is False
    assert off.destination == "kafka://127.0.0.1:9092/twofold"
    with pytest.raises(ConfigurationError, match="idempotence"):
        open_kafka_publisher("kafka://127.0.0.1:9092?idempotence=maybe")
