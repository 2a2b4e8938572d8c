"""The relay's rules, against the in-memory event store and a fake broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from tests.unit.relay.fakes import FakePublisher
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.memory.relay_store import MemoryRelayStore
from twofold.application.failure import Backoff, BreakerState, CircuitBreaker, RetryPolicy
from twofold.application.relay.core import Relay, RelayState
from twofold.application.relay.errors import BrokerUnavailableError
from twofold.application.relay.message import BusMessage
from twofold.records import ANY
from twofold.testing.event_store_contract import new_event

DEADLINE = 60.0  # bounds a broken test; no test depends on it being short


def fast_relay(
    events: InMemoryEventStore,
    publisher: FakePublisher,
    store: MemoryRelayStore,
    *,
    window: int = 8,
    clock: object = None,
) -> Relay:
    extra = {"clock": clock} if clock is not None else {}
    return Relay(
        events,
        publisher,
        store,
        window=window,
        policy=RetryPolicy(Backoff(initial=0.001, maximum=0.01)),
        breaker=CircuitBreaker(failure_threshold=2, backoff=Backoff(initial=0.001, maximum=0.01)),
        **extra,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def caught_up(relay: Relay, events: InMemoryEventStore) -> None:
    await asyncio.wait_for(relay.reached(await events.head_position()), DEADLINE)


async def write(events: InMemoryEventStore, streams: Sequence[str], rounds: int) -> None:
    for n in range(rounds):
        for stream in streams:
            await events.append(stream, [new_event(data=b'{"n":%d}' % n)], expected_version=ANY)


def first_copies(held: list[BusMessage]) -> list[BusMessage]:
    seen: set[str] = set()
    out = []
    for message in held:
        if message.event_id not in seen:
            seen.add(message.event_id)
            out.append(message)
    return out


async def test_the_log_is_published_in_order_numbered_and_the_checkpoint_follows() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    await write(events, ["a", "b", "c"], 20)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
        await write(events, ["a", "d"], 5)  # live events, after catching up
        await caught_up(relay, events)
    log = await events.read_all(limit=1000)
    held = sorted(publisher.held, key=lambda m: m.sequence)
    assert [m.sequence for m in held] == list(range(1, len(log) + 1))
    assert [m.record for m in held] == log
    checkpoint = await store.checkpoint(publisher.destination)
    assert (checkpoint.position, checkpoint.sequence) == (log[-1].position, len(log))


async def test_the_window_is_bounded_and_a_stream_never_has_two_messages_in_flight() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    await write(events, [f"s{n}" for n in range(12)] + ["hot"] * 4, 10)
    relay = fast_relay(events, publisher, store, window=5)
    async with running(relay):
        await caught_up(relay, events)
    assert publisher.max_in_flight == 5
    assert publisher.max_per_stream == 1
    for stream in {m.stream_id for m in publisher.held}:
        versions = [m.record.stream_version for m in publisher.held if m.stream_id == stream]
        assert versions == sorted(versions)


class ForgetfulStore(MemoryRelayStore):
    """Stops storing checkpoints: a crash before the checkpoint reached the disk."""

    forget = False

    async def advance(self, destination: str, *, position: int, sequence: int) -> None:
        if not self.forget:
            await super().advance(destination, position=position, sequence=sequence)


async def test_after_a_crash_the_relay_publishes_again_under_the_same_numbers() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), ForgetfulStore()
    await write(events, ["a", "b"], 10)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
    store.forget = True
    await write(events, ["a", "c"], 10)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
    store.forget = False
    relay = fast_relay(events, publisher, store)  # "restarted": from the stored checkpoint
    await write(events, ["b"], 3)
    async with running(relay):
        await caught_up(relay, events)
    numbers: dict[str, set[int]] = {}
    for message in publisher.held:
        numbers.setdefault(message.event_id, set()).add(message.sequence)
    assert len(publisher.held) == 20 + 20 * 2 + 3  # those of the lost checkpoint went twice
    assert all(len(n) == 1 for n in numbers.values())
    assert sorted(n.pop() for n in numbers.values()) == list(range(1, 44))


async def test_while_the_broker_is_down_nothing_is_lost_and_the_breaker_opens() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    await write(events, ["a", "b"], 5)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
        publisher.down = True
        await write(events, ["a", "b", "c"], 10)
        while relay.breaker.status().opened < 3:  # each retry fails again: wait for the next
            publisher.failed.clear()
            await asyncio.wait_for(publisher.failed.wait(), DEADLINE)
        status = await relay.status()
        assert status.state is RelayState.RETRYING
        assert status.lag_events == 30
        assert status.last_error is not None and "connection" in status.last_error
        publisher.down = False
        await caught_up(relay, events)
        assert relay.breaker.state is BreakerState.CLOSED
    log = await events.read_all(limit=1000)
    copies = first_copies(publisher.held)
    assert sorted(m.record.position for m in copies) == [r.position for r in log]
    for stream in "abc":
        versions = [m.record.stream_version for m in copies if m.stream_id == stream]
        assert versions == sorted(versions)


def big(message: BusMessage) -> bool:
    return message.record.data == b'{"big":true}'


async def test_a_refused_message_parks_with_the_rest_of_its_stream_and_others_go_on() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    publisher.refuse = big
    await events.append("a", [new_event()], expected_version=0)
    await events.append("a", [new_event(data=b'{"big":true}')], expected_version=1)
    await write(events, ["a", "b"], 3)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
        assert {(m.stream_id, m.record.stream_version) for m in publisher.held} == {
            ("a", 1), ("b", 1), ("b", 2), ("b", 3),
        }  # fmt: skip
        parked = await relay.parked()
        assert [(p.stream_id, p.sequence is not None) for p in parked] == [
            ("a", True), ("a", False), ("a", False), ("a", False),
        ]  # fmt: skip
        assert parked[0].error == "too large"
        assert (await relay.status()).parked == 4

        publisher.refuse = lambda message: False
        assert await relay.retry("a") == 4
        await write(events, ["a"], 1)
        await caught_up(relay, events)
    versions = [m.record.stream_version for m in publisher.held if m.stream_id == "a"]
    assert versions == [1, 2, 3, 4, 5, 6]
    numbers = [m.sequence for m in publisher.held]
    assert len(set(numbers)) == len(numbers)  # no number on two messages
    assert await relay.parked() == []


async def test_a_stream_refused_again_stays_parked_whole() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    publisher.refuse = big
    await events.append("a", [new_event(data=b'{"big":true}'), new_event()], expected_version=0)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
        assert await relay.retry() == 0
        assert len(await relay.parked("a")) == 2
    assert publisher.held == []


async def test_skipping_parked_messages_sends_markers_and_the_stream_goes_on() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    publisher.refuse = big
    await events.append("a", [new_event(data=b'{"big":true}'), new_event()], expected_version=0)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
        assert await relay.skip("a") == 2
        await write(events, ["a"], 1)
        await caught_up(relay, events)
    a = [m for m in publisher.held if m.stream_id == "a"]
    assert [(m.record.stream_version, m.skipped) for m in a] == [(1, True), (2, True), (3, False)]
    assert all(m.body == b"" for m in a[:2])


async def test_parked_messages_can_be_retried_while_the_relay_is_not_running() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    publisher.refuse = big
    await events.append("a", [new_event(data=b'{"big":true}')], expected_version=0)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
    publisher.refuse = lambda message: False
    again = fast_relay(events, publisher, store)
    assert len(await again.parked()) == 1
    assert await again.retry() == 1
    assert [m.record.stream_version for m in publisher.held] == [1]
    assert (await store.checkpoint(publisher.destination)).sequence == 2


async def test_status_reports_the_lag_in_events_and_in_seconds() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    await write(events, ["a"], 3)
    first = (await events.read_all(limit=1))[0]
    now = first.recorded_at.timestamp() + 42.5
    relay = fast_relay(events, publisher, store, clock=lambda: now)
    await relay.start()
    status = await relay.status()
    assert (status.lag_events, status.checkpoint, status.head) == (3, 0, 3)
    assert status.lag_seconds == pytest.approx(42.5)
    assert status.breaker.state is BreakerState.CLOSED
    async with running(relay):
        await caught_up(relay, events)
        status = await relay.status()
    assert (status.lag_events, status.lag_seconds, status.published) == (0, 0.0, 3)


class SlowStore(MemoryRelayStore):
    """A checkpoint write that waits for the test: a disk whose fsync takes long."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.stored = asyncio.Event()
        self.writes = 0

    async def advance(self, destination: str, *, position: int, sequence: int) -> None:
        self.writes += 1
        await self.gate.wait()
        await super().advance(destination, position=position, sequence=sequence)
        self.stored.set()


async def test_a_slow_checkpoint_write_does_not_hold_up_publishing() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), SlowStore()
    await write(events, ["a", "b"], 5)
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        await caught_up(relay, events)
        await write(events, ["a", "b"], 5)  # published while the first write still waits
        await caught_up(relay, events)
        assert len(publisher.held) == 20
        assert store.writes == 1
        store.gate.set()
        # The last checkpoint is stored once the slow write is done, with no new event.
        while (await store.checkpoint(publisher.destination)).position < 20:
            store.stored.clear()
            await asyncio.wait_for(store.stored.wait(), DEADLINE)
    assert (await store.checkpoint(publisher.destination)).sequence == 20


async def test_a_relay_started_while_the_broker_is_down_waits_for_it_and_loses_nothing() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    await write(events, ["a", "b"], 3)
    publisher.down = True
    relay = fast_relay(events, publisher, store)
    async with running(relay):
        while relay.breaker.status().opened < 2:  # each retry fails again: wait for the next
            publisher.failed.clear()
            await asyncio.wait_for(publisher.failed.wait(), DEADLINE)
        assert (await relay.status()).state is RelayState.RETRYING
        publisher.down = False
        await caught_up(relay, events)
    assert sorted(m.sequence for m in first_copies(publisher.held)) == list(range(1, 7))


class TimedRelay(Relay):
    """Notes each delay the relay waits between tries, and only yields instead."""

    waits: list[float]

    async def _serve_requests_while(self, delay: float) -> None:
        self.waits.append(delay)
        await asyncio.sleep(0)  # let the test run between tries


async def test_the_retry_policy_sets_the_relays_cap_jitter_and_limit() -> None:
    events, publisher, store = InMemoryEventStore(), FakePublisher(), MemoryRelayStore()
    await write(events, ["a"], 2)
    publisher.down = True
    policy = RetryPolicy(Backoff(initial=0.001, maximum=0.004, jitter=0.5), attempts=5)
    # A breaker that never opens: the delays are the policy's alone.
    relay = TimedRelay(
        events, publisher, store, policy=policy, breaker=CircuitBreaker(failure_threshold=100)
    )
    relay.waits = []
    with pytest.raises(BrokerUnavailableError, match="connection refused"):
        await asyncio.wait_for(relay.run(), DEADLINE)
    assert relay.state is RelayState.STOPPED
    # Five retries (the limit), then the sixth failure stops it; doubling, capped at 4 ms,
    # each spread by jitter into [half, all] of its ceiling.
    ceilings = [0.001, 0.002, 0.004, 0.004, 0.004]
    assert len(relay.waits) == len(ceilings) == relay.retries
    for waited, ceiling in zip(relay.waits, ceilings, strict=True):
        assert ceiling * 0.5 <= waited <= ceiling
    assert publisher.opened == 0 and (await relay.status()).checkpoint == 0

    # Without a limit (the default, BROKER_RETRY) it keeps trying until the broker is back.
    forever = TimedRelay(events, publisher, MemoryRelayStore())
    forever.waits = []
    assert forever.policy.attempts is None
    async with running(forever):
        while len(forever.waits) < 10:
            publisher.failed.clear()
            await asyncio.wait_for(publisher.failed.wait(), DEADLINE)
        publisher.down = False
        await caught_up(forever, events)
    assert forever.state is RelayState.RUNNING
