"""Traces of the shop, caught with OpenTelemetry's in-memory exporter.

An HTTP request continues the client's trace; its command dispatch and its append are
children of it; the command's trace context travels in the metadata of the events it
recorded, and the projection that applies them links back to the command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.e2e.conftest import shop_settings
from twofold.adapters.otel import OpenTelemetryTracer
from twofold.application.app import App
from twofold.application.tracing import TRACEPARENT, Tracer
from twofold.bootstrap import bootstrap
from twofold.codec import Codec
from twofold.examples.shop.http import api as shop_api
from twofold.http.server import build_asgi

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@asynccontextmanager
async def traced_shop(
    tmp_path: Path, tracer: Tracer
) -> AsyncIterator[tuple[httpx.AsyncClient, list[App]]]:
    built: list[App] = []

    async def build() -> App:
        app = await bootstrap(shop_api.service, shop_settings(tmp_path), tracer=tracer)
        built.append(app)
        return app

    asgi = build_asgi(shop_api, build)
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            yield client, built


def recording() -> tuple[OpenTelemetryTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryTracer(provider), exporter


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


async def test_a_command_is_traced_from_the_request_to_the_projection(tmp_path: Path) -> None:
    tracer, exporter = recording()
    async with traced_shop(tmp_path, tracer) as (client, built):
        headers = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
        body = {"user_id": "u1", "email": "u1@x.io", "name": "Ann"}
        answer = await client.post("/api/users", json=body, headers=headers)
        assert answer.status_code == 201
        position = answer.json()["position"]
        read = await client.get("/api/users/u1", params={"min_position": position})
        assert read.status_code == 200
        [app] = built
        [event] = await app.event_store.read_all(after=0)
    spans = exporter.get_finished_spans()

    [request] = named(spans, "POST /api/users")
    assert request.kind is SpanKind.SERVER
    assert request.context is not None and request.parent is not None
    assert request.context.trace_id == int(TRACE_ID, 16)  # the client's trace goes on
    assert request.parent.span_id == int(CLIENT_SPAN, 16)
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/users"
    assert request.attributes["http.response.status_code"] == 201

    [command] = named(spans, "command CreateUser")
    assert command.parent is not None and command.parent.span_id == span_id(request)
    [append] = named(spans, "append")
    assert append.parent is not None and append.parent.span_id == span_id(command)
    assert append.attributes is not None and append.attributes["twofold.events"] == 1

    # The event carries the command's context; the projection's apply links to it.
    metadata = Codec.decode_metadata(event).extra
    assert metadata[TRACEPARENT] == f"00-{TRACE_ID}-{span_id(command):016x}-01"
    [apply] = named(spans, "projection users apply")
    assert apply.kind is SpanKind.CONSUMER
    assert [link.context.span_id for link in apply.links] == [span_id(command)]
    assert [link.context.trace_id for link in apply.links] == [int(TRACE_ID, 16)]

    [query] = named(spans, "query GetUser")
    [get] = named(spans, "GET /api/users/{user_id}")
    assert query.parent is not None and query.parent.span_id == span_id(get)


async def test_a_failed_command_marks_its_span(tmp_path: Path) -> None:
    tracer, exporter = recording()
    async with traced_shop(tmp_path, tracer) as (client, _):
        body = {"user_id": "u1", "email": "u1@x.io", "name": "Ann"}
        assert (await client.post("/api/users", json=body)).status_code == 201
        exporter.clear()
        assert (await client.post("/api/users", json=body)).status_code == 409
    spans = exporter.get_finished_spans()

    [command] = named(spans, "command CreateUser")
    assert command.status.status_code is StatusCode.ERROR
    assert command.attributes is not None
    assert command.attributes["error.type"] == "AggregateExistsError"
    [request] = named(spans, "POST /api/users")
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 409


async def test_without_an_sdk_nothing_is_traced_and_events_carry_no_context(
    tmp_path: Path,
) -> None:
    tracer = OpenTelemetryTracer()  # the global provider: OpenTelemetry's placeholder here
    assert not tracer.enabled
    async with traced_shop(tmp_path, tracer) as (client, built):
        body = {"user_id": "u1", "email": "u1@x.io", "name": "Ann"}
        assert (await client.post("/api/users", json=body)).status_code == 201
        [event] = await built[0].event_store.read_all(after=0)
    assert TRACEPARENT not in Codec.decode_metadata(event).extra
