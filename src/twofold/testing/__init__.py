"""Contract suites and helpers for testing twofold backends and apps."""

from twofold.testing.event_store_contract import EventStoreContract
from twofold.testing.publisher_contract import PublisherContract
from twofold.testing.read_store_contract import ReadStoreContract
from twofold.testing.relay_store_contract import DurableRelayStoreContract, RelayStoreContract

__all__ = [
    "DurableRelayStoreContract",
    "EventStoreContract",
    "PublisherContract",
    "ReadStoreContract",
    "RelayStoreContract",
]
