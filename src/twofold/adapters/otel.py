"""The Tracer port over OpenTelemetry (the ``otel`` extra), with W3C Trace Context.

Spans go to the global ``TracerProvider`` (the one the application, or
``opentelemetry-instrument``, configures), or to the ``provider`` given. While the global
provider is OpenTelemetry's placeholder (no SDK configured), ``enabled`` is False and
twofold opens no span and writes no context into events: tracing costs a check. A provider
configured after the app started is found within ``LOOK_INTERVAL`` seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence

from opentelemetry import trace
from opentelemetry.trace import Link, NoOpTracerProvider, ProxyTracerProvider, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from twofold.application.tracing import AttributeValue, NoTracer, Span, SpanKind

__all__ = ["OpenTelemetryTracer"]

_KINDS = {
    "internal": trace.SpanKind.INTERNAL,
    "server": trace.SpanKind.SERVER,
    "client": trace.SpanKind.CLIENT,
    "producer": trace.SpanKind.PRODUCER,
    "consumer": trace.SpanKind.CONSUMER,
}
_PLACEHOLDERS = (ProxyTracerProvider, NoOpTracerProvider)
_NO_TRACER = NoTracer()
LOOK_INTERVAL = 1.0
"""Seconds between looks for a configured global provider, until there is one."""


class _Span:
    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def rename(self, name: str) -> None:
        self._span.update_name(name)

    def record_error(self, error: BaseException) -> None:
        self._span.record_exception(error)
        self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self._span.set_attribute("error.type", type(error).__qualname__)


class OpenTelemetryTracer:
    """Spans of the tracer ``twofold``; see the module docstring."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self._provider = provider
        source = provider if provider is not None else trace.get_tracer_provider()
        self._tracer = source.get_tracer("twofold")
        self._propagator = TraceContextTextMapPropagator()
        self._enabled = False
        self._look_at = 0.0

    @property
    def enabled(self) -> bool:
        # A provider, once set, stays (OpenTelemetry sets the global one once): look for
        # it at most once a second until it is there, not at every span.
        if self._enabled:
            return True
        now = time.monotonic()
        if now >= self._look_at:
            self._look_at = now + LOOK_INTERVAL
            provider = self._provider if self._provider is not None else trace.get_tracer_provider()
            self._enabled = not isinstance(provider, _PLACEHOLDERS)
        return self._enabled

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Mapping[str, AttributeValue] | None = None,
        parent: Mapping[str, str] | None = None,
        links: Sequence[Mapping[str, str]] = (),
    ) -> contextlib.AbstractContextManager[Span]:
        if not self.enabled:
            return _NO_TRACER.span(name)
        return self._span(name, kind, attributes, parent, links)

    @contextlib.contextmanager
    def _span(
        self,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue] | None,
        parent: Mapping[str, str] | None,
        links: Sequence[Mapping[str, str]],
    ) -> Iterator[Span]:
        context = self._propagator.extract(parent) if parent is not None else None
        found: list[Link] = []
        for carrier in links:
            linked = trace.get_current_span(self._propagator.extract(carrier)).get_span_context()
            if linked.is_valid:
                found.append(Link(linked))
        with self._tracer.start_as_current_span(
            name,
            context=context,
            kind=_KINDS[kind],
            attributes=attributes,
            links=found,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            wrapped = _Span(span)
            try:
                yield wrapped
            except Exception as error:
                wrapped.record_error(error)
                raise

    def inject(self, carrier: MutableMapping[str, str]) -> None:
        if self.enabled:
            self._propagator.inject(carrier)
