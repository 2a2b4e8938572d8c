"""NATS JetStream: a relay destination (and a source for projections in other services)."""

from twofold.adapters.nats.publisher import NatsPublisher, NatsSettings, open_nats_publisher

__all__ = ["NatsPublisher", "NatsSettings", "open_nats_publisher"]
