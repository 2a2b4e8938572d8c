"""An in-memory broker behind the Publisher port, for unit tests of the relay."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence

from twofold.application.relay.errors import (
    BrokerUnavailableError,
    MessageRefusedError,
    PublishError,
)
from twofold.application.relay.message import BusMessage
from twofold.application.relay.source import Delivery


class FakePublisher:
    destination = "fake://broker/twofold"

    def __init__(self, *, seed: int = 1) -> None:
        self.held: list[BusMessage] = []
        self.down = False
        self.refuse: Callable[[BusMessage], bool] = lambda message: False
        self.in_flight = 0
        self.max_in_flight = 0
        self.streams_in_flight: dict[str, int] = {}
        self.max_per_stream = 0
        self.attempts = 0
        self._rng = random.Random(seed)
        self.opened = 0
        self.closed = 0
        self.failed = asyncio.Event()
        """Set at each failure the broker reports; tests clear it and wait for the next."""

    async def open(self) -> None:
        if self.down:
            self.failed.set()
            raise BrokerUnavailableError(self.destination, "connection refused")
        self.opened += 1

    async def publish(self, message: BusMessage) -> None:
        self.attempts += 1
        stream = message.stream_id
        self.in_flight += 1
        self.streams_in_flight[stream] = self.streams_in_flight.get(stream, 0) + 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_per_stream = max(self.max_per_stream, self.streams_in_flight[stream])
        try:
            # Acknowledgements come back in a shuffled order, as from a real broker.
            for _ in range(self._rng.randrange(4)):
                await asyncio.sleep(0)
            if self.down:
                self.failed.set()
                raise BrokerUnavailableError(self.destination, "connection reset")
            if self.refuse(message):
                raise MessageRefusedError(self.destination, message.event_id, "too large")
            self.held.append(message)
        finally:
            self.in_flight -= 1
            self.streams_in_flight[stream] -= 1

    async def publish_many(self, messages: Sequence[BusMessage]) -> list[PublishError | None]:
        results = await asyncio.gather(*(self.publish(m) for m in messages), return_exceptions=True)
        outcomes: list[PublishError | None] = []
        for result in results:
            if isinstance(result, PublishError):
                outcomes.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                outcomes.append(None)
        return outcomes

    async def close(self) -> None:
        self.closed += 1


class FakeSource:
    destination = "fake://broker/twofold"

    def __init__(self) -> None:
        self.acked: list[int] = []

    async def open(self) -> None:
        pass

    async def receive(self, *, max_messages: int, timeout: float) -> list[Delivery]:
        return []

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.acked.extend(d.message.sequence for d in deliveries)

    async def close(self) -> None:
        pass
