"""Contract suites and helpers for testing twofold backends and apps."""

from twofold.testing.event_store_contract import EventStoreContract

__all__ = ["EventStoreContract"]
