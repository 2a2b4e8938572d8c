"""The Publisher contract: what the relay relies on, as tests every broker adapter passes.

Subclass ``PublisherContract`` in a test module (its name must start with ``Test``)::

    class TestMyPublisher(PublisherContract):
        @pytest.fixture(autouse=True)
        def _broker(self, my_broker) -> None:
            self.broker = my_broker                    # per-test resources go on self

        async def make_publisher(self, *, max_message_bytes: int) -> Publisher:
            ...  # a publisher to a fresh destination, refusing messages over the limit

        async def read_back(self) -> list[BusMessage]:
            ...  # everything the destination holds, in the broker's order (raw client)

        def stop_broker(self) -> None: ...             # optional: the outage test needs both
        def start_broker(self) -> None: ...

The tests need pytest and pytest-asyncio; they run in strict and in auto mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from twofold.application.relay.errors import BrokerUnavailableError, MessageRefusedError
from twofold.application.relay.message import BusMessage
from twofold.application.relay.publisher import Publisher
from twofold.records import RecordedEvent, uuid7

__all__ = ["PublisherContract", "bus_message"]

OUTAGE_DEADLINE = 60.0  # seconds; bounds a broken test, it is no performance figure


def bus_message(
    stream_id: str = "order-1",
    stream_version: int = 1,
    *,
    position: int = 1,
    sequence: int = 1,
    data: bytes = b'{"n":1}',
    type: str = "OrderPlaced",
) -> BusMessage:
    """A message as the relay would publish it, with a fresh event id."""
    record = RecordedEvent(
        event_id=uuid7(),
        stream_id=stream_id,
        stream_version=stream_version,
        position=position,
        type=type,
        schema_version=1,
        data=data,
        metadata=b'{"correlation_id":"c-1"}',
        recorded_at=datetime.now(UTC),
    )
    return BusMessage(record=record, sequence=sequence, source="contract")


class PublisherContract:
    max_message_bytes = 64 * 1024

    async def make_publisher(self, *, max_message_bytes: int) -> Publisher:
        raise NotImplementedError

    async def read_back(self) -> list[BusMessage]:
        raise NotImplementedError

    def stop_broker(self) -> None:
        pytest.skip("this adapter's test cannot stop its broker")

    def start_broker(self) -> None:
        pytest.skip("this adapter's test cannot start its broker")

    @pytest_asyncio.fixture
    async def publisher(self) -> AsyncIterator[Publisher]:
        made = await self.make_publisher(max_message_bytes=self.max_message_bytes)
        await made.open()
        try:
            yield made
        finally:
            await made.close()

    async def test_publish_returns_once_the_broker_holds_the_message_as_sent(
        self, publisher: Publisher
    ) -> None:
        sent = bus_message()
        await publisher.publish(sent)
        assert await self.read_back() == [sent]

    async def test_a_streams_messages_keep_the_order_they_were_published_in(
        self, publisher: Publisher
    ) -> None:
        sent = []
        for n in range(1, 31):
            message = bus_message(f"order-{n % 3}", n, position=n, sequence=n)
            await publisher.publish(message)
            sent.append(message)
        held = await self.read_back()
        for stream in ("order-0", "order-1", "order-2"):
            assert [m for m in held if m.stream_id == stream] == [
                m for m in sent if m.stream_id == stream
            ]

    async def test_concurrent_publishes_are_each_acknowledged(self, publisher: Publisher) -> None:
        sent = [bus_message(f"s-{n}", 1, position=n, sequence=n) for n in range(1, 51)]
        await asyncio.gather(*(publisher.publish(m) for m in sent))
        held = await self.read_back()
        assert sorted(m.sequence for m in held) == list(range(1, 51))

    async def test_publish_many_reports_each_message_on_its_own(self, publisher: Publisher) -> None:
        big = bus_message("big", data=b'"' + b"x" * self.max_message_bytes + b'"', sequence=2)
        sent = [bus_message(f"s-{n}", position=n, sequence=n) for n in (1, 3, 4)]
        outcomes = await publisher.publish_many([sent[0], big, sent[1], sent[2]])
        assert outcomes[0] is None and outcomes[2] is None and outcomes[3] is None
        assert isinstance(outcomes[1], MessageRefusedError)
        assert outcomes[1].event_id == big.event_id
        assert sorted(m.sequence for m in await self.read_back()) == [1, 3, 4]

    async def test_publish_many_reports_an_unreachable_broker_for_each_message(
        self, publisher: Publisher
    ) -> None:
        await publisher.publish(bus_message())
        self.stop_broker()
        try:
            outcomes = await publisher.publish_many(
                [bus_message(f"s-{n}", position=n, sequence=n) for n in (2, 3)]
            )
            assert all(isinstance(o, BrokerUnavailableError) for o in outcomes), outcomes
        finally:
            self.start_broker()

    async def test_publishing_a_message_again_is_safe(self, publisher: Publisher) -> None:
        sent = bus_message()
        await publisher.publish(sent)
        await publisher.publish(sent)
        held = await self.read_back()
        assert 1 <= len(held) <= 2
        assert all(m == sent for m in held)

    async def test_a_message_over_the_limit_is_refused_for_good_and_not_stored(
        self, publisher: Publisher
    ) -> None:
        big = bus_message("big", data=b'"' + b"x" * self.max_message_bytes + b'"')
        with pytest.raises(MessageRefusedError) as refused:
            await publisher.publish(big)
        assert refused.value.event_id == big.event_id
        small = bus_message("small")
        await publisher.publish(small)
        assert await self.read_back() == [small]

    async def test_an_unreachable_broker_is_reported_and_publishing_resumes_after_it_returns(
        self, publisher: Publisher
    ) -> None:
        first = bus_message("order-1", 1)
        await publisher.publish(first)
        self.stop_broker()
        with pytest.raises(BrokerUnavailableError) as down:
            await publisher.publish(bus_message("order-1", 2, position=2, sequence=2))
        assert down.value.destination == publisher.destination
        self.start_broker()
        again = bus_message("order-2", 1, position=3, sequence=3)
        deadline = asyncio.get_running_loop().time() + OUTAGE_DEADLINE
        while True:
            try:
                await publisher.publish(again)
                break
            except BrokerUnavailableError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)  # the broker is starting: poll it, as the relay does
        assert again in await self.read_back()

    async def test_close_may_be_called_twice(self) -> None:
        made = await self.make_publisher(max_message_bytes=self.max_message_bytes)
        await made.open()
        await made.close()
        await made.close()
