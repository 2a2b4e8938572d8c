"""Trace context through the relay: the publish and a remote consumer's apply link to the
command that recorded the events (OpenTelemetry's in-memory exporter, the fake broker)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import msgspec
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.unit.relay.fakes import FakePublisher, FakeSource
from tests.unit.relay.ledger import Ledger
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.memory.relay_store import MemoryRelayStore
from twofold.adapters.otel import OpenTelemetryTracer
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.failure import Backoff, CircuitBreaker, RetryPolicy
from twofold.application.relay.core import Relay
from twofold.application.relay.message import decode_message
from twofold.application.relay.remote import BusProjectionRunner
from twofold.application.relay.source import Delivery
from twofold.codec import Codec
from twofold.records import ANY
from twofold.testing.event_store_contract import new_event

DEADLINE = 60.0  # bounds a broken test; no test depends on it being short
TRACES = {
    "a": ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
    "b": ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
}


def recording() -> tuple[OpenTelemetryTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryTracer(provider), exporter


async def record_deposits(events: InMemoryEventStore) -> None:
    """One deposit per account, each recorded by a command of its own trace; one untraced."""
    for account, (trace_id, span_id) in TRACES.items():
        metadata = {"traceparent": f"00-{trace_id}-{span_id}-01", "tracestate": "twofold=1"}
        await events.append(
            account,
            [
                new_event(
                    "Deposited",
                    msgspec.json.encode({"account": account, "amount": 2}),
                    metadata=msgspec.json.encode(metadata),
                )
            ],
            expected_version=ANY,
        )
    untraced = msgspec.json.encode({"account": "c", "amount": 1})
    await events.append("c", [new_event("Deposited", untraced)], expected_version=ANY)


def linked(span: ReadableSpan) -> set[tuple[str, str]]:
    return {
        (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in span.links
    }


async def publish_all(relay: Relay, events: InMemoryEventStore) -> None:
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.reached(await events.head_position()), DEADLINE)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_publish_and_the_remote_apply_link_to_the_commands(tmp_path: Path) -> None:
    tracer, exporter = recording()
    events, publisher = InMemoryEventStore(), FakePublisher()
    await record_deposits(events)
    relay = Relay(events, publisher, MemoryRelayStore(), tracer=tracer)
    await publish_all(relay, events)

    published = [s for s in exporter.get_finished_spans() if s.name.startswith("relay ")]
    assert {s.name for s in published} == {"relay fake://broker/twofold publish"}
    assert all(s.kind is SpanKind.PRODUCER for s in published)
    assert sum(s.attributes["messaging.batch.message_count"] for s in published) == 3  # type: ignore[misc,index]
    assert set().union(*map(linked, published)) == set(TRACES.values())

    # The context travels in the message (ce_traceparent), through the broker's headers.
    delivered = [decode_message(m.headers(), m.body) for m in publisher.held]
    traced = [m.headers().get("ce_traceparent") for m in publisher.held]
    assert sorted(t for t in traced if t) == sorted(f"00-{t}-{s}-01" for t, s in TRACES.values())

    views = await SQLiteReadStore.open(tmp_path / "views.db")
    try:
        runner = BusProjectionRunner(
            Ledger(), source=FakeSource(), read_store=views, codec=Codec(), tracer=tracer
        )
        await runner.start()
        await runner.process([Delivery(message) for message in delivered])
        assert (await views.get("ledger_accounts", "a") or {})["balance"] == 2
    finally:
        await views.close()
    [apply] = [s for s in exporter.get_finished_spans() if s.name == "projection ledger apply"]
    assert apply.kind is SpanKind.CONSUMER
    assert linked(apply) == set(TRACES.values())
    assert apply.attributes is not None
    assert (apply.attributes["twofold.events"], apply.attributes["twofold.position"]) == (3, 3)


async def test_a_failed_publish_marks_its_span() -> None:
    tracer, exporter = recording()
    events, publisher = InMemoryEventStore(), FakePublisher()
    await record_deposits(events)
    publisher.refuse = lambda message: message.stream_id == "a"
    relay = Relay(
        events,
        publisher,
        MemoryRelayStore(),
        tracer=tracer,
        policy=RetryPolicy(Backoff(initial=0.001, maximum=0.01)),
        breaker=CircuitBreaker(failure_threshold=2, backoff=Backoff(initial=0.001, maximum=0.01)),
    )
    await publish_all(relay, events)  # the refused message parks; the others go on
    failed = [s for s in exporter.get_finished_spans() if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    assert failed[0].attributes is not None
    assert failed[0].attributes["twofold.failed_messages"] == 1
