"""Which tracer bootstrap picks: OpenTelemetry's when the ``otel`` extra is installed."""

from __future__ import annotations

import sys

import pytest

from twofold.adapters.otel import OpenTelemetryTracer
from twofold.application.tracing import NoTracer
from twofold.bootstrap import open_tracer


def test_with_the_extra_the_tracer_is_opentelemetry() -> None:
    assert isinstance(open_tracer(), OpenTelemetryTracer)


def test_without_the_extra_nothing_is_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if opentelemetry were not installed: importing the adapter fails.
    monkeypatch.setitem(sys.modules, "twofold.adapters.otel", None)
    tracer = open_tracer()
    assert isinstance(tracer, NoTracer)
    assert not tracer.enabled
    carrier: dict[str, str] = {}
    with tracer.span("command CreateUser") as span:
        span.set_attribute("twofold.position", 1)
        tracer.inject(carrier)
    assert carrier == {}
