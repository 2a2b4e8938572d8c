"""The metrics and the tracer every built App, relay and bus worker records to."""

from __future__ import annotations

from twofold.application.metrics import Metrics
from twofold.application.tracing import NoTracer, Tracer


def open_metrics() -> Metrics:
    """Prometheus metrics: this process's own, or with ``PROMETHEUS_MULTIPROC_DIR`` set
    (``twofold serve --workers N`` sets it), every worker's added up."""
    from twofold.adapters.prometheus import PrometheusMetrics

    return PrometheusMetrics()


def open_tracer() -> Tracer:
    """OpenTelemetry's tracer when the ``otel`` extra is installed; otherwise none."""
    try:
        from twofold.adapters.otel import OpenTelemetryTracer
    except ImportError:
        return NoTracer()
    return OpenTelemetryTracer()
