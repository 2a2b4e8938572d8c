"""Kafka (any Apache Kafka-compatible broker): a relay destination, through aiokafka."""

from twofold.adapters.kafka.publisher import KafkaPublisher, KafkaSettings, open_kafka_publisher

__all__ = ["KafkaPublisher", "KafkaSettings", "open_kafka_publisher"]
