"""``GET /metrics`` and the measure of every HTTP request.

``/metrics`` answers the App's metrics in the Prometheus text format, every worker process
added up (``twofold.application.metrics``). It says how busy the service is and which
projections lag, not what is in it, but it is still guarded like the admin routes:

- with API keys configured, a key with the ``metrics`` scope (or ``admin``, which includes
  it) is needed: Prometheus sends it as ``Authorization: Bearer <secret>``
  (``authorization: {credentials: <secret>}`` in its scrape config);
- without keys, only clients on the loopback address are answered (403 otherwise), the
  same rule as for the admin API.

``ObserveRequests`` (ASGI middleware, inside twofold's stack so it sees every request)
sets the request's ids (``twofold.http.request_ids``), records
``http_server_request_duration_seconds`` by method, route template and status
(OpenTelemetry's ``http.server.request.duration``, named the Prometheus way) and opens the
request's server span, continuing a trace the client sent (W3C ``traceparent`` header).
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twofold.application.metrics import HistogramChild, Metrics
from twofold.application.tracing import AttributeValue, Tracer
from twofold.http.endpoints import Runtime
from twofold.http.problems import ProblemError, problem
from twofold.http.request_ids import release_ids, take_ids

__all__ = ["METRICS_SCOPE", "ObserveRequests", "RequestMeasures", "metrics_endpoint"]

METRICS_SCOPE = "metrics"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


def is_loopback_client(scope: Scope) -> bool:
    """Whether the request comes from this host (no client address: a Unix socket)."""
    client = scope.get("client")
    if not client:
        return True
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return bool(client[0] == "localhost")


def metrics_endpoint(runtime: Runtime) -> Any:
    """The ``GET /metrics`` handler over ``runtime`` (guarded as the module doc says)."""

    async def metrics(request: Request) -> Response:
        app = runtime.running()
        if runtime.keys:
            headers = request.headers
            runtime.keys.check(
                _header(headers.get("authorization")),
                _header(headers.get("x-api-key")),
                METRICS_SCOPE,
            )
        elif not is_loopback_client(request.scope):
            raise ProblemError(
                problem(
                    403,
                    "forbidden",
                    "Forbidden",
                    "without API keys /metrics answers loopback clients only; set "
                    "TWOFOLD_API_KEYS with a key of the 'metrics' scope (e.g. "
                    "prometheus:<secret>=metrics) and send it as 'Authorization: Bearer <secret>'",
                )
            )
        body = await app.metrics.render()
        return Response(body, media_type=app.metrics.content_type)

    return metrics


def _header(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")


class RequestMeasures:
    """The instruments ``ObserveRequests`` records to, for one App."""

    def __init__(self, metrics: Metrics, tracer: Tracer) -> None:
        self.tracer = tracer
        self._duration = metrics.histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests (OpenTelemetry http.server.request.duration).",
            labels=("http_request_method", "http_route", "http_response_status_code"),
        )
        self._children: dict[tuple[str, str, int], HistogramChild] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._duration.labels(method, route, str(status))
            self._children[key] = child
        child.observe(seconds)


class ObserveRequests:
    """ASGI middleware: the request's ids (``twofold.http.request_ids``: set for its
    handling, ``X-Request-Id`` echoed), its duration and its span (see the module doc)."""

    def __init__(self, app: ASGIApp, runtime: Any) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        measures: RequestMeasures | None = getattr(self.runtime, "measures", None)
        started = time.perf_counter()
        echoed, tokens = take_ids(scope)
        status = 500  # unless an answer starts

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", echoed)]
            await send(message)

        try:
            if measures is not None and measures.tracer.enabled:
                method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
                await self._traced(measures.tracer, scope, receive, send_status, method)
            else:
                await self.app(scope, receive, send_status)
        finally:
            release_ids(tokens)
            if measures is not None:
                method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
                measures.observe(method, _route(scope), status, time.perf_counter() - started)

    async def _traced(
        self, tracer: Tracer, scope: Scope, receive: Receive, send: Send, method: str
    ) -> None:
        carrier = {
            _TRACE_HEADERS[name]: value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracer.span(method, kind="server", attributes=attributes, parent=carrier) as span:
            await self.app(scope, receive, send_status)
            route = _route(scope)
            if route:
                span.set_attribute("http.route", route)
                span.rename(f"{method} {route}")
            if status:
                span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))


def _route(scope: Scope) -> str:
    """The matched route's template (``/api/orders/{order_id}``); "" when none matched."""
    template = scope.get("twofold.route")
    if template is None:
        template = getattr(scope.get("route"), "path", "")
    return str(template)
