"""Tracing behind a small port: spans, and the trace context that travels with events.

twofold opens a span per HTTP request, per command dispatch, per append, per query, and
per projection batch it applies. The command's trace context (W3C Trace Context: the
``traceparent`` and ``tracestate`` values) is written into the metadata of every event the
command records, under the keys ``TRACEPARENT`` and ``TRACESTATE``; whatever later handles
those events (a projection's apply, the relay's publish, a remote consumer's apply) opens
its span with a *link* to each event's context (``links=[event metadata, ...]``), so a
trace viewer leads from a command to everything it caused.

``NoTracer`` does nothing and costs next to nothing; ``bootstrap`` gives the App an
OpenTelemetry tracer (``twofold.adapters.otel``) when the ``otel`` extra is installed, and
its spans are recorded once the application configures an OpenTelemetry SDK (a
``TracerProvider`` with an exporter). Code that would build costly attributes asks
``tracer.enabled`` first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Literal, Protocol

import msgspec

from twofold.records import RecordedEvent

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "AttributeValue",
    "NoTracer",
    "Span",
    "SpanKind",
    "Tracer",
    "event_context",
    "event_contexts",
]

TRACEPARENT = "traceparent"
"""The event metadata key holding the W3C ``traceparent`` of the command that recorded it."""
TRACESTATE = "tracestate"
"""The event metadata key holding the W3C ``tracestate`` (when the trace has one)."""

_TRACEPARENT_BYTES = TRACEPARENT.encode()
_metadata = msgspec.json.Decoder(dict[str, Any])


def event_context(record: RecordedEvent) -> dict[str, str] | None:
    """The trace context of the command that recorded ``record`` (a carrier for ``links=``),
    or None when its metadata holds none."""
    if _TRACEPARENT_BYTES not in record.metadata:
        return None
    try:
        metadata = _metadata.decode(record.metadata)
    except msgspec.DecodeError:
        return None
    return {k: v for k in (TRACEPARENT, TRACESTATE) if isinstance(v := metadata.get(k), str)}


def event_contexts(records: Sequence[RecordedEvent]) -> list[dict[str, str]]:
    """The trace contexts of ``records`` that carry one (for ``links=``)."""
    return [c for c in map(event_context, records) if c]


SpanKind = Literal["internal", "server", "client", "producer", "consumer"]
AttributeValue = str | bool | int | float


class Span(Protocol):
    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def rename(self, name: str) -> None:
        """Name the span anew (once what it names is known, like an HTTP route)."""

    def record_error(self, error: BaseException) -> None:
        """Mark the span failed by ``error`` (its type and message recorded)."""


class Tracer(Protocol):
    @property
    def enabled(self) -> bool:
        """Whether spans are recorded now (False: ``span`` and ``inject`` do nothing)."""

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Mapping[str, AttributeValue] | None = None,
        parent: Mapping[str, str] | None = None,
        links: Sequence[Mapping[str, str]] = (),
    ) -> contextlib.AbstractContextManager[Span]:
        """A span, current inside the ``with`` block; an error raised there is recorded.

        ``parent``: a carrier (HTTP headers, event metadata) whose trace context becomes the
        parent instead of the current span. ``links``: carriers whose contexts the span is
        linked to (those without a context are left out).
        """

    def inject(self, carrier: MutableMapping[str, str]) -> None:
        """Write the current span's context into ``carrier`` (``traceparent``...)."""


class _NoSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def rename(self, name: str) -> None:
        pass

    def record_error(self, error: BaseException) -> None:
        pass


_NO_SPAN = _NoSpan()


@contextlib.contextmanager
def _nothing() -> Iterator[Span]:
    yield _NO_SPAN


class NoTracer:
    """Records no span and injects no context."""

    enabled = False

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Mapping[str, AttributeValue] | None = None,
        parent: Mapping[str, str] | None = None,
        links: Sequence[Mapping[str, str]] = (),
    ) -> contextlib.AbstractContextManager[Span]:
        return _nothing()

    def inject(self, carrier: MutableMapping[str, str]) -> None:
        pass
