"""The relays of a process (RelayHost): leases, reports for /health, and dead letters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.unit.relay.fakes import FakePublisher
from tests.unit.test_metrics_port import parsed
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.memory.relay_store import MemoryRelayStore
from twofold.adapters.prometheus import PrometheusMetrics
from twofold.adapters.sqlite.relay_lease import FileRelayLease
from twofold.application.failure import Backoff, CircuitBreaker, RetryPolicy
from twofold.application.metrics import Metrics
from twofold.application.relay.core import Relay
from twofold.application.relay.errors import RelayNotActiveError
from twofold.application.relay.host import RelayDestination, RelayHost
from twofold.application.relay.lease import InProcessLease, RelayLease
from twofold.bootstrap import check_settings
from twofold.errors import ConfigurationError
from twofold.records import ANY
from twofold.settings import Settings
from twofold.testing.event_store_contract import new_event

DEADLINE = 60.0  # bounds a broken test; no test depends on it being short


def host_of(
    events: InMemoryEventStore,
    publisher: FakePublisher,
    store: MemoryRelayStore,
    lease: RelayLease,
    metrics: Metrics | None = None,
) -> RelayHost:
    def make() -> Relay:
        return Relay(
            events,
            publisher,
            store,
            metrics=metrics,
            policy=RetryPolicy(Backoff(initial=0.001, maximum=0.01)),
            breaker=CircuitBreaker(
                failure_threshold=2, backoff=Backoff(initial=0.001, maximum=0.01)
            ),
        )

    destination = RelayDestination(publisher.destination, make, lease)
    return RelayHost([destination], event_store=events, store=store, retry_interval=0.01)


async def write(events: InMemoryEventStore, count: int, stream: str = "acct-1") -> int:
    position = 0
    for _ in range(count):
        position = (await events.append(stream, [new_event()], expected_version=ANY)).position
    return position


async def relayed(host: RelayHost, position: int) -> None:
    """Wait for the active relay's checkpoint (its reports) to reach ``position``."""
    async with asyncio.timeout(DEADLINE):
        while True:
            [report] = await host.reports()
            if report.checkpoint >= position:
                return
            await asyncio.sleep(0.005)  # polled with a deadline, as /health is


async def test_a_host_relays_what_it_holds_and_reports_lag_and_breaker() -> None:
    events, store, publisher = InMemoryEventStore(), MemoryRelayStore(), FakePublisher()
    host = host_of(events, publisher, store, InProcessLease())
    position = await write(events, 5)
    await host.start()
    try:
        await asyncio.wait_for(host.wait_active(publisher.destination), DEADLINE)
        await relayed(host, position)
        [report] = await host.reports()
        assert (report.active, report.state, report.breaker) == (True, "running", "closed")
        assert (report.lag_events, report.lag_seconds, report.parked) == (0, 0.0, 0)
        assert [m.record.position for m in publisher.held] == list(range(1, position + 1))
    finally:
        await host.close()


async def test_a_host_that_waits_for_the_lease_reports_the_stored_checkpoint(
    tmp_path: Path,
) -> None:
    events, store = InMemoryEventStore(), MemoryRelayStore()
    first, second = FakePublisher(), FakePublisher()
    path = str(tmp_path / "events.db")
    active = host_of(events, first, store, FileRelayLease(path, first.destination))
    standby = host_of(
        events, second, store, FileRelayLease(path, second.destination, retry_interval=0.01)
    )
    position = await write(events, 3)
    await active.start()
    await asyncio.wait_for(active.wait_active(first.destination), DEADLINE)
    await standby.start()
    try:
        await relayed(active, position)
        [report] = await standby.reports()
        assert (report.active, report.state, report.breaker) == (False, "waiting", None)
        assert (report.checkpoint, report.lag_events) == (position, 0)
        more = await write(events, 2)
        await active.close()  # its lease is released: the standby takes over
        await asyncio.wait_for(standby.wait_active(second.destination), DEADLINE)
        await relayed(standby, more)
        # The standby went on from the stored checkpoint: nothing twice, nothing lost.
        sent = [m.record.position for m in (*first.held, *second.held)]
        assert sorted(set(sent)) == list(range(1, more + 1))
        assert [m.record.position for m in second.held] == [
            p for p in range(1, more + 1) if p not in {m.record.position for m in first.held}
        ]
    finally:
        await active.close()
        await standby.close()


async def test_dead_letters_are_listed_retried_and_skipped_where_the_relay_runs() -> None:
    events, store, publisher = InMemoryEventStore(), MemoryRelayStore(), FakePublisher()
    publisher.refuse = lambda message: message.record.stream_id == "big"
    host = host_of(events, publisher, store, InProcessLease())
    await write(events, 2, "big")
    position = await write(events, 2, "small")
    await host.start()
    try:
        await asyncio.wait_for(host.wait_active(publisher.destination), DEADLINE)
        await relayed(host, position)
        parked = await host.parked()
        assert [(m.stream_id, m.position) for m in parked] == [("big", 1), ("big", 2)]
        [report] = await host.reports()
        assert report.parked == 2
        assert await host.retry(publisher.destination, stream_id="big") == 0  # refused again
        publisher.refuse = lambda message: False
        assert await host.skip(publisher.destination, stream_id="big") == 2
        assert await host.parked(publisher.destination) == []
        skipped = [m for m in publisher.held if m.record.stream_id == "big"]
        assert [m.skipped for m in skipped] == [True, True]
    finally:
        await host.close()


async def test_retrying_where_the_relay_does_not_run_is_refused_with_where_it_runs() -> None:
    events, store, publisher = InMemoryEventStore(), MemoryRelayStore(), FakePublisher()
    host = host_of(events, publisher, store, InProcessLease())  # not started
    with pytest.raises(RelayNotActiveError, match="does not run the relay"):
        await host.retry(publisher.destination)
    with pytest.raises(RelayNotActiveError, match="nats://nowhere"):
        await host.skip("nats://nowhere")


def test_check_settings_names_every_bad_bus_url_in_a_line_of_its_own() -> None:
    settings = Settings(
        bus="amqp://broker:5672,nats://broker:4222?colour=blue,nats://b:4222,nats://b:4222"
    )
    with pytest.raises(ConfigurationError) as refused:
        check_settings(settings)
    lines = str(refused.value).splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("TWOFOLD_BUS 'amqp://broker:5672': unknown scheme 'amqp'")
    assert "nats://" in lines[0] and "kafka://" in lines[0] and "redis://" in lines[0]
    assert lines[1].startswith("TWOFOLD_BUS: unknown option(s) colour")
    assert "twice" in lines[2] and "nats://b:4222" in lines[2]


def test_check_settings_accepts_each_broker_with_its_options() -> None:
    check_settings(
        Settings(
            bus="nats://n:4222?stream=ORDERS,kafka://k:9092?idempotence=false&partitions=4,"
            "redis://r:6379?split=category"
        )
    )


async def test_the_relay_records_sent_acked_failed_lag_and_breaker_in_the_metrics() -> None:
    events, store, publisher = InMemoryEventStore(), MemoryRelayStore(), FakePublisher()
    publisher.refuse = lambda message: message.record.stream_id == "big"
    metrics = PrometheusMetrics()
    host = host_of(events, publisher, store, InProcessLease(), metrics)
    metrics.on_scrape(host.report_metrics)
    await write(events, 1, "big")
    position = await write(events, 3, "small")
    await host.start()
    try:
        await asyncio.wait_for(host.wait_active(publisher.destination), DEADLINE)
        await relayed(host, position)
        publisher.down = True
        more = await write(events, 1, "small")
        async with asyncio.timeout(DEADLINE):
            while (await host.reports())[0].state != "retrying":  # noqa: ASYNC110
                await asyncio.sleep(0.005)  # polled with a deadline, as /health is
        samples = parsed(await metrics.render())
    finally:
        await host.close()
    at = (("destination", publisher.destination),)
    assert samples["twofold_relay_sent_messages_total"][at] >= 5
    assert samples["twofold_relay_acked_messages_total"][at] == 3
    refused = (*at, ("reason", "refused"))
    unavailable = (*at, ("reason", "unavailable"))
    assert samples["twofold_relay_failed_messages_total"][tuple(sorted(refused))] == 1
    assert samples["twofold_relay_failed_messages_total"][tuple(sorted(unavailable))] >= 1
    assert samples["twofold_relay_lag_events"][at] == more - position
    assert samples["twofold_relay_parked_messages"][at] == 1
    assert samples["twofold_relay_active"][at] == 1
    assert samples["twofold_relay_breaker_open"][at] in (0.0, 1.0)


class OtherPublisher(FakePublisher):
    destination = "fake://other/twofold"


async def test_each_destination_has_its_own_relay_and_checkpoint() -> None:
    events, store = InMemoryEventStore(), MemoryRelayStore()
    first, second = FakePublisher(), OtherPublisher()
    second.down = True  # one broker away holds up nothing at the other
    destinations = [
        RelayDestination(
            publisher.destination,
            lambda publisher=publisher: Relay(  # type: ignore[misc]
                events,
                publisher,
                store,
                policy=RetryPolicy(Backoff(initial=0.001, maximum=0.01)),
                breaker=CircuitBreaker(
                    failure_threshold=2, backoff=Backoff(initial=0.001, maximum=0.01)
                ),
            ),
            InProcessLease(),
        )
        for publisher in (first, second)
    ]
    host = RelayHost(destinations, event_store=events, store=store, retry_interval=0.01)
    position = await write(events, 4)
    await host.start()
    try:
        async with asyncio.timeout(DEADLINE):
            while True:
                reports = {r.destination: r for r in await host.reports()}
                if reports[first.destination].checkpoint == position and (
                    reports[second.destination].state == "retrying"
                ):
                    break
                await asyncio.sleep(0.005)
        assert reports[second.destination].checkpoint == 0
        assert reports[second.destination].lag_events == position
        assert host.active() == sorted([first.destination, second.destination])
        second.down = False
        async with asyncio.timeout(DEADLINE):
            while (await store.checkpoint(second.destination)).position < position:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        assert [m.record.position for m in second.held] == list(range(1, position + 1))
    finally:
        await host.close()
