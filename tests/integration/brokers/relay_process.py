"""A relay in a process of its own, built from twofold's classes (the CLI comes later).

    python -m tests.integration.brokers.relay_process EVENTS_DB BUS_URL

It relays the SQLite event store EVENTS_DB to BUS_URL (nats://, kafka://, redis://), keeping
its checkpoint in the same file, until it is killed. It prints "ready" once started.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from twofold.adapters.kafka import open_kafka_publisher
from twofold.adapters.nats import open_nats_publisher
from twofold.adapters.redis_streams import open_redis_publisher
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.relay_store import SQLiteRelayStore
from twofold.application.failure import Backoff, CircuitBreaker
from twofold.application.relay.core import Relay
from twofold.application.relay.publisher import Publisher

OPENERS: dict[str, Callable[[str], Publisher]] = {
    "nats": open_nats_publisher,
    "kafka": open_kafka_publisher,
    "redis": open_redis_publisher,
}


def publisher_for(url: str) -> Publisher:
    return OPENERS[url.split(":", 1)[0]](url)


async def main(path: str, url: str) -> None:
    events = await SQLiteEventStore.open(path, poll_interval=0.05)
    store = await SQLiteRelayStore.open(path)
    relay = Relay(
        events,
        publisher_for(url),
        store,
        window=64,
        backoff=Backoff(initial=0.05, maximum=0.5),
        breaker=CircuitBreaker(failure_threshold=3, backoff=Backoff(initial=0.2, maximum=1.0)),
    )
    await relay.start()
    print("ready", flush=True)
    await relay.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
