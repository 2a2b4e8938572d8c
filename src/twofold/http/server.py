"""The ASGI app of an ``HttpApi``: routes, lifespan, and the operational endpoints.

On startup the lifespan builds the service's App (an App factory, ``bootstrap`` in
``HttpApi.asgi``) and starts it: the App's coordination joins the other processes serving the
same store, so that exactly one of them runs each projection while all of them append and
answer. On shutdown it closes the App. Nothing here constructs an adapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from twofold.application.app import App
from twofold.http.admin import AdminApi, admin_guard
from twofold.http.admin.dashboard import dashboard_asset, dashboard_page
from twofold.http.api import HttpApi
from twofold.http.auth import ApiKeys
from twofold.http.docs import docs_asset, docs_page
from twofold.http.endpoints import (
    CommandEndpoint,
    QueryEndpoint,
    Receive,
    Runtime,
    Scope,
    Send,
    answer_problem,
)
from twofold.http.health import check_health, check_ready, liveness
from twofold.http.observe import ObserveRequests, RequestMeasures, metrics_endpoint
from twofold.http.openapi import openapi_document
from twofold.http.problems import PROBLEM_JSON, ProblemError, encode_problem, problem

__all__ = ["TwofoldRuntime", "build_asgi"]

log = logging.getLogger("twofold.http")
_encoder = msgspec.json.Encoder()
Endpoint = CommandEndpoint | QueryEndpoint
_Dynamic = tuple[tuple[tuple[int, str], ...], "_Methods"]


AppFactory = Callable[[], Awaitable[App]]
"""Builds the service's App (``bootstrap`` does, in ``HttpApi.asgi``)."""


@dataclasses.dataclass(kw_only=True)
class TwofoldRuntime(Runtime):
    """The endpoints' runtime, plus what the operational endpoints need."""

    openapi: bytes | None = None
    measures: RequestMeasures | None = None
    """What every HTTP request is recorded to (the running App's metrics and tracer)."""


def build_asgi(api: HttpApi, app: App | AppFactory) -> Starlette:
    """The ASGI app serving ``api`` with ``app``: a built App, or a function that builds
    one on startup. The lifespan starts it (its projections run, or are followed, as its
    coordination decides) and closes it on shutdown; nothing here picks a backend."""
    runtime = TwofoldRuntime(body_limit=api.body_limit)
    admin = AdminApi(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        built = app if isinstance(app, App) else await app()
        try:
            await built.start()
            runtime.keys = ApiKeys(built.settings.api_keys)
            runtime.openapi = _encoder.encode(openapi_document(api, auth=bool(runtime.keys)))
            runtime.measures = RequestMeasures(built.metrics, built.tracer)
            runtime.app = built
            yield
        finally:
            runtime.app = None
            runtime.measures = None
            await admin.close()
            await built.close()

    async def health(_: Request) -> Response:
        app = runtime.running()
        report = await check_health(
            app,
            threshold=app.settings.lag_threshold,
            runs_projections=app.runs_projections,
            attended=app.attended,
        )
        status = 503 if report.status == "DOWN" else 200
        return Response(_encoder.encode(report), status, media_type="application/json")

    async def live(_: Request) -> Response:
        return Response(_encoder.encode(liveness()), media_type="application/json")

    async def ready(_: Request) -> Response:
        app = runtime.running()
        report = await check_ready(app)
        status = 200 if report.status == "UP" else 503
        return Response(_encoder.encode(report), status, media_type="application/json")

    async def openapi(_: Request) -> Response:
        body = runtime.openapi
        if body is None:  # served before startup (tests without a lifespan)
            body = _encoder.encode(openapi_document(api, auth=False))
        return Response(body, media_type="application/json")

    async def docs(_: Request) -> Response:
        return docs_page(api.title)

    async def dashboard(request: Request) -> Response:
        scope = request.scope
        admin_guard(runtime.keys, scope["headers"], scope.get("client"), page=True)
        return dashboard_page()

    async def dashboard_file(request: Request) -> Response:
        scope = request.scope
        admin_guard(runtime.keys, scope["headers"], scope.get("client"), page=True)
        return dashboard_asset(request)

    by_path: dict[str, dict[str, Endpoint]] = {}
    for command in api.commands:
        by_path.setdefault(command.path, {})[command.method] = CommandEndpoint(command, runtime)
    for query in api.queries:
        by_path.setdefault(query.path, {})["GET"] = QueryEndpoint(query, runtime)
    routes: list[BaseRoute] = [
        Route(path, _Methods(endpoints, path), methods=None) for path, endpoints in by_path.items()
    ]
    routes += [
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint(runtime), methods=["GET"], include_in_schema=False),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
        Route("/docs/assets/{name}", docs_asset, methods=["GET"], include_in_schema=False),
        Route("/admin", dashboard, methods=["GET"], include_in_schema=False),
        Route("/admin/assets/{name}", dashboard_file, methods=["GET"], include_in_schema=False),
        *admin.routes(),
    ]
    return TwofoldApp(
        by_path,
        runtime,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_problem, ProblemError: _problem_response},
    )


class TwofoldApp(Starlette):
    """A Starlette app whose declared API routes are matched by a table of their own.

    The table sits inside the middleware stack, just within the user's middleware and
    Starlette's outermost error handler: ``app.add_middleware(CORSMiddleware, ...)`` or
    ``GZipMiddleware`` see every API request, and ``scope["app"]`` is set, as on any
    Starlette app. The API endpoints answer every error themselves, so they skip Starlette's
    ExceptionMiddleware and regular-expression router: matching by path segments costs one
    dict lookup or a few string comparisons. Anything else (the operational routes, unknown
    paths, redirects, lifespan) goes on through Starlette as usual.
    """

    def __init__(
        self, by_path: dict[str, dict[str, Endpoint]], runtime: TwofoldRuntime, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._by_path = by_path
        self._runtime = runtime

    def build_middleware_stack(self) -> ASGIApp:
        error_handler = None
        handlers: dict[Any, Any] = {}
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        inner = ExceptionMiddleware(self.router, handlers=handlers, debug=self.debug)
        app: ASGIApp = _RouteTable(self._by_path, inner)
        outer = [
            Middleware(ServerErrorMiddleware, handler=error_handler, debug=self.debug),
            Middleware(ObserveRequests, runtime=self._runtime),
            *self.user_middleware,
        ]
        for cls, args, kwargs in reversed(outer):
            app = cls(app, *args, **kwargs)
        return app


class _RouteTable:
    """The API routes by path segments; what matches none goes on to ``app``."""

    def __init__(self, by_path: dict[str, dict[str, Endpoint]], app: ASGIApp) -> None:
        self.app = app
        self._static: dict[str, _Methods] = {}
        # By segment count, then by which segments are literal: the literals' values -> the
        # route's parameter positions and endpoints. Matching is one lookup per group.
        groups: dict[int, dict[tuple[int, ...], dict[Any, _Dynamic]]] = {}
        for path, endpoints in by_path.items():
            methods = _Methods(endpoints, path)
            segments = path.split("/")
            names = tuple((i, s[1:-1]) for i, s in enumerate(segments) if s.startswith("{"))
            if not names:
                self._static[path] = methods
                continue
            fixed = tuple(i for i, s in enumerate(segments) if not s.startswith("{"))
            key = operator.itemgetter(*fixed)(segments)
            group = groups.setdefault(len(segments), {}).setdefault(fixed, {})
            group[key] = (names, methods)
        self._dynamic = {
            count: [(operator.itemgetter(*fixed), table) for fixed, table in by_fixed.items()]
            for count, by_fixed in groups.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            target = self._static.get(path)
            if target is not None:
                scope["path_params"] = {}
                await target(scope, receive, send)
                return
            segments = path.split("/")
            for literals, table in self._dynamic.get(len(segments), ()):
                found = table.get(literals(segments))
                if found is not None:
                    names, methods = found
                    values = {name: segments[i] for i, name in names}
                    if all(values.values()):  # an empty segment is no parameter
                        scope["path_params"] = values
                        await methods(scope, receive, send)
                        return
        await self.app(scope, receive, send)


class _Methods:
    """One path's endpoints by method, so a path with a command and a query (POST and GET
    /api/users) is one resource: its 405 answer's Allow lists exactly both (and HEAD, which
    a GET route answers as GET, without the body)."""

    def __init__(self, endpoints: dict[str, Endpoint], path: str) -> None:
        self.endpoints = endpoints
        self.path = path
        self.head = endpoints.get("GET")
        self.allow = ", ".join(sorted({*endpoints, *(("HEAD",) if self.head else ())}))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["twofold.route"] = self.path  # for the request's measures (ObserveRequests)
        endpoint = self.endpoints.get(scope["method"])
        if endpoint is not None:
            await endpoint(scope, receive, send)
            return
        if self.head is not None and scope["method"] == "HEAD":
            await self.head(scope, receive, _without_body(send))
            return
        detail = f"{scope['method']} is not allowed on {scope['path']}; use {self.allow}"
        error = ProblemError(
            problem(405, "method-not-allowed", "Method Not Allowed", detail),
            headers=[(b"allow", self.allow.encode())],
        )
        await answer_problem(send, error, scope["path"])


def _without_body(send: Send) -> Send:
    """``send`` for a HEAD request: GET's status and headers (Content-Length included)."""

    async def head(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            message = {"type": "http.response.body", "body": b""}
        await send(message)

    return head


async def _http_problem(request: Request, error: Exception) -> Response:
    """Starlette's own errors (unknown path, wrong method) as problem details too."""
    assert isinstance(error, HTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
    detail = {
        404: f"no route matches {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(error.status_code, str(error.detail))
    found = ProblemError(problem(error.status_code, slug, _title(error.status_code), detail))
    headers: dict[str, Any] = dict(error.headers or {})
    return Response(
        encode_problem(found, request.url.path),
        error.status_code,
        headers=headers,
        media_type=PROBLEM_JSON.decode(),
    )


async def _problem_response(request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemError)
    return Response(
        encode_problem(error, request.url.path),
        error.problem.status,
        headers={k.decode(): v.decode() for k, v in error.headers},
        media_type=PROBLEM_JSON.decode(),
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
