"""``/admin/api/``: the operations of ``twofold.application.operations`` over HTTP, as JSON.

Every route is guarded (``twofold.http.admin.guard``: the ``admin`` scope, or loopback
only without keys), answers problem details on any failure, and changes nothing when its
input is refused. The routes and what they answer:

=======  ==============================================  ===================================
GET      /admin/api/overview                             health, head, commands/s, p99
GET      /admin/api/projections                          every projection's status and lag
GET      /admin/api/projections/{name}                   one of them
POST     /admin/api/projections/{name}/rebuild           202 and a job (or its progress as
                                                         server-sent events)
GET      /admin/api/jobs/{job_id}                        a rebuild job
POST     /admin/api/projections/{name}/reset|pause|resume
GET      /admin/api/dead-letters?projection=&stream_id=  parked events with data and error
GET      /admin/api/projections/{name}/dead-letters/{position}
POST     /admin/api/projections/{name}/dead-letters/retry   {"stream_id"?}
POST     /admin/api/projections/{name}/dead-letters/skip    {"stream_id"?, "positions"?}
GET      /admin/api/streams?after=&limit=                a page of stream ids
GET      /admin/api/streams/{stream_id}?from_version=&limit=   a page of its events
GET      /admin/api/events/{event_id}                    one event (found by reading the log)
GET      /admin/api/events/{event_id}/caused             the events it caused (causation_id)
GET      /admin/api/correlations?correlation_id=         the events of one correlation id
POST     /admin/api/verify                               {"projection"?}: the differences
=======  ==============================================  ===================================
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from twofold.application.operations import Operations, ProjectionReport, decode_event
from twofold.application.views import DeadLetter
from twofold.errors import TwofoldError, UnknownProjectionError
from twofold.http import accept
from twofold.http.admin.figures import Figures
from twofold.http.admin.guard import admin_guard
from twofold.http.admin.jobs import Job, Jobs, JobState
from twofold.http.admin.schemas import (
    ActionDone,
    DeadLetterOut,
    DeadLetters,
    EventOut,
    EventsFound,
    Overview,
    Projections,
    Released,
    RetryBody,
    SkipBody,
    StreamEvents,
    Streams,
    VerifyBody,
    VerifyOut,
)
from twofold.http.admin.search import Found, search_events
from twofold.http.endpoints import Runtime
from twofold.http.health import check_health
from twofold.http.problems import (
    FieldProblem,
    ProblemError,
    internal_error,
    invalid_input,
    not_found,
    problem,
    problem_for,
)
from twofold.records import RecordedEvent

__all__ = ["AdminApi"]

log = logging.getLogger("twofold.admin")
B = TypeVar("B")
_encoder = msgspec.json.Encoder()
BODY_LIMIT = 256 * 1024
PAGE = 100
MAX_PAGE = 1000
MAX_POSITION = 2**63 - 1
MAX_TEXT = 1000
"""The longest stream id or correlation id a route takes."""
Handler = Callable[[Request, Operations], Awaitable[Response]]


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    merged = {"cache-control": "no-store", **(headers or {})}
    return Response(_encoder.encode(value), status, merged, media_type="application/json")


class AdminApi:
    """The admin routes over a runtime's App; rebuild jobs live as long as the server."""

    def __init__(self, runtime: Runtime, figures: Figures | None = None) -> None:
        self.runtime = runtime
        self.jobs = Jobs()
        self.figures = figures if figures is not None else Figures()

    def routes(self) -> list[BaseRoute]:
        def route(path: str, handler: Handler, method: str) -> Route:
            return Route(f"/admin/api{path}", self._guarded(handler), methods=[method])

        return [
            route("/overview", self.overview, "GET"),
            route("/projections", self.projections, "GET"),
            route("/projections/{name}", self.projection, "GET"),
            route("/projections/{name}/rebuild", self.rebuild, "POST"),
            route("/projections/{name}/reset", self.reset, "POST"),
            route("/projections/{name}/pause", self.pause, "POST"),
            route("/projections/{name}/resume", self.resume, "POST"),
            route("/jobs/{job_id}", self.job, "GET"),
            route("/dead-letters", self.dead_letters, "GET"),
            route("/projections/{name}/dead-letters/retry", self.retry, "POST"),
            route("/projections/{name}/dead-letters/skip", self.skip, "POST"),
            # An int converter: .../dead-letters/retry is that route's (405 for a GET).
            route("/projections/{name}/dead-letters/{position:int}", self.dead_letter, "GET"),
            route("/streams", self.streams, "GET"),
            route("/streams/{stream_id:path}", self.stream, "GET"),
            route("/events/{event_id}", self.event, "GET"),
            route("/events/{event_id}/caused", self.caused, "GET"),
            route("/correlations", self.correlated, "GET"),
            route("/verify", self.verify, "POST"),
        ]

    async def close(self) -> None:
        await self.jobs.close()

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            scope = request.scope
            admin_guard(self.runtime.keys, scope["headers"], scope.get("client"))
            app = self.runtime.running()
            try:
                return await handler(request, app.operations)
            except ProblemError:
                raise
            except UnknownProjectionError as error:
                raise not_found(str(error)) from None
            except TwofoldError as error:
                found = problem_for(error)
                if found is None:
                    raise ProblemError(
                        problem(409, "operation-refused", "Operation refused", str(error))
                    ) from None
                raise found from None
            except Exception:
                log.exception("admin %s %s failed", request.method, request.url.path)
                raise internal_error() from None

        return endpoint

    # -- projections ----------------------------------------------------------------------

    async def overview(self, request: Request, ops: Operations) -> Response:
        app = ops.app
        # The same report as /health: projections, breakers, verify, relays and cache.
        health = await check_health(
            app,
            threshold=app.settings.lag_threshold,
            runs_projections=app.runs_projections,
            attended=app.attended,
        )
        commands, queries, source = await self.figures.read(app.metrics)
        return _json(
            Overview(
                status=health.status,
                head_position=health.head_position,
                process_id=os.getpid(),
                projections=len(health.projections),
                parked=sum(r.parked for r in health.projections),
                commands=commands,
                queries=queries,
                figures=source,
                rebuilds=[j for j in self.jobs.all() if j.status is JobState.RUNNING],
                breakers=health.breakers,
                relays=health.relays,
                cache=health.cache,
            )
        )

    async def projections(self, request: Request, ops: Operations) -> Response:
        reports, head = await ops.status_at()
        return _json(Projections(head_position=head, projections=reports))

    async def projection(self, request: Request, ops: Operations) -> Response:
        return _json(await _report(ops, _name(request)))

    async def rebuild(self, request: Request, ops: Operations) -> Response:
        name = _name(request)
        await _body(request, None)
        ops.names(name)  # an unknown name: 404 before anything starts
        # One rebuild per projection at a time: asking again follows the one that runs.
        job = self.jobs.running(name) or self.jobs.start(
            name, lambda progress: ops.rebuild(name, progress=progress)
        )
        location = f"/admin/api/jobs/{job.id}"
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(
                self._events(job),
                media_type="text/event-stream",
                headers={"cache-control": "no-store", "location": location},
            )
        return _json(job, 202, {"location": location})

    async def _events(self, job: Job) -> AsyncIterator[bytes]:
        async for seen in self.jobs.follow(job):
            kind = {JobState.RUNNING: b"progress", JobState.DONE: b"done"}.get(
                seen.status, b"failed"
            )
            yield b"event: " + kind + b"\ndata: " + _encoder.encode(seen) + b"\n\n"

    async def job(self, request: Request, ops: Operations) -> Response:
        job_id = request.path_params["job_id"]
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found(
                f"no rebuild job {job_id!r} in worker process {os.getpid()}: jobs live in "
                "the process that runs them, and with several workers this request may have "
                "reached another; follow a rebuild with 'Accept: text/event-stream' instead"
            )
        return _json(job)

    async def reset(self, request: Request, ops: Operations) -> Response:
        return await self._act(request, ops, "reset", ops.reset)

    async def pause(self, request: Request, ops: Operations) -> Response:
        return await self._act(request, ops, "pause", ops.pause)

    async def resume(self, request: Request, ops: Operations) -> Response:
        return await self._act(request, ops, "resume", ops.resume)

    async def _act(
        self,
        request: Request,
        ops: Operations,
        action: Literal["pause", "resume", "reset"],
        run: Callable[[str], Awaitable[bool | None]],
    ) -> Response:
        name = _name(request)
        await _body(request, None)
        ops.names(name)
        taken = await run(name)
        report = await _report(ops, name)
        return _json(ActionDone(projection=name, action=action, taken=taken, status=report))

    # -- dead letters ---------------------------------------------------------------------

    async def dead_letters(self, request: Request, ops: Operations) -> Response:
        query = _query(request, {"projection", "stream_id"})
        name = query.get("projection")
        stream_id = query.get("stream_id")
        if stream_id is not None:
            _text(stream_id, "stream_id")
        letters = await ops.dead_letters(name)
        if stream_id is not None:
            letters = [d for d in letters if d.stream_id == stream_id]
        # By projection, then stream, in stream order: the order they are released in.
        letters.sort(key=lambda d: (d.projection, d.stream_id, d.record.stream_version))
        return _json(DeadLetters(dead_letters=[_letter(d) for d in letters]))

    async def dead_letter(self, request: Request, ops: Operations) -> Response:
        name = _name(request)
        position: int = request.path_params["position"]
        if not 1 <= position <= MAX_POSITION:
            raise invalid_input(
                [FieldProblem("position", f"must be from 1 to {MAX_POSITION}, not {position}")]
            )
        for letter in await ops.dead_letters(name):
            if letter.position == position:
                return _json(_letter(letter))
        raise not_found(f"no event of projection {name!r} is parked at position {position}")

    async def retry(self, request: Request, ops: Operations) -> Response:
        name = _name(request)
        body = await _body(request, RetryBody) or RetryBody()
        ops.names(name)
        await _check_parked_stream(ops, name, body.stream_id)
        applied = await ops.retry(name, body.stream_id)
        remaining = len(await ops.dead_letters(name))
        return _json(
            Released(
                projection=name, stream_id=body.stream_id, applied=applied, remaining=remaining
            )
        )

    async def skip(self, request: Request, ops: Operations) -> Response:
        name = _name(request)
        body = await _body(request, SkipBody) or SkipBody()
        ops.names(name)
        letters = await _check_parked_stream(ops, name, body.stream_id)
        if body.positions is not None:
            parked = {d.position for d in letters}
            unknown = sorted(set(body.positions) - parked)
            if unknown:
                listed = ", ".join(str(p) for p in sorted(parked)) or "none"
                raise not_found(
                    f"no event at {', '.join(map(str, unknown))} is parked by {name!r}"
                    f"{'' if body.stream_id is None else f' in stream {body.stream_id!r}'}"
                    f" (parked: {listed}); nothing was skipped"
                )
        skipped = await ops.skip(name, body.stream_id, body.positions)
        remaining = len(await ops.dead_letters(name))
        return _json(
            Released(
                projection=name, stream_id=body.stream_id, skipped=skipped, remaining=remaining
            )
        )

    # -- streams --------------------------------------------------------------------------

    async def streams(self, request: Request, ops: Operations) -> Response:
        query = _query(request, {"after", "limit"})
        limit = _limit(query.get("limit"))
        if "after" in query:
            _text(query["after"], "after")
        page = await ops.streams(query.get("after"), limit)
        next_after = None
        if len(page) == limit and await ops.streams(page[-1].stream_id, 1):
            next_after = page[-1].stream_id  # another page follows
        return _json(Streams(streams=page, next_after=next_after))

    async def stream(self, request: Request, ops: Operations) -> Response:
        stream_id = _text(request.path_params["stream_id"], "stream_id")
        query = _query(request, {"from_version", "limit"})
        limit = _limit(query.get("limit"))
        raw = query.get("from_version")
        from_version = 1 if raw is None else _whole(raw, "from_version", minimum=1)
        version = await ops.app.event_store.stream_version(stream_id)
        if version == 0:
            raise not_found(
                f"no stream {stream_id!r} in the log; check the id (GET /admin/api/streams)"
            )
        events = await ops.stream(stream_id, from_version, limit)
        last = events[-1].stream_version if events else from_version - 1
        return _json(
            StreamEvents(
                stream_id=stream_id,
                version=version,
                events=[_event(e) for e in events],
                next_from_version=last + 1 if last < version else None,
            )
        )

    async def event(self, request: Request, ops: Operations) -> Response:
        event_id = _event_id(request.path_params["event_id"])
        found = await search_events(ops.app.event_store, event_id=event_id, limit=1)
        if not found.events:
            where = "in the log" if found.complete else f"in the newest {found.scanned} events"
            raise not_found(f"no event {event_id} {where}")
        return _json(_event(found.events[0]))

    async def caused(self, request: Request, ops: Operations) -> Response:
        event_id = _event_id(request.path_params["event_id"])
        query = _query(request, {"limit"})
        found = await search_events(
            ops.app.event_store, causation_id=event_id, limit=_limit(query.get("limit"))
        )
        return _json(_found(found))

    async def correlated(self, request: Request, ops: Operations) -> Response:
        query = _query(request, {"correlation_id", "limit"})
        correlation_id = query.get("correlation_id")
        if correlation_id is None:
            raise invalid_input([FieldProblem("correlation_id", "is required")])
        _text(correlation_id, "correlation_id")
        found = await search_events(
            ops.app.event_store,
            correlation_id=correlation_id,
            limit=_limit(query.get("limit")),
        )
        return _json(_found(found))

    # -- verify ---------------------------------------------------------------------------

    async def verify(self, request: Request, ops: Operations) -> Response:
        body = await _body(request, VerifyBody) or VerifyBody()
        report = await ops.verify(body.projection)
        return _json(VerifyOut(consistent=report.consistent, report=report))


# -- input ---------------------------------------------------------------------------------


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    accept.check_path({"name": name})
    return name


def _text(value: str, field: str) -> str:
    if not value or len(value) > MAX_TEXT or "\x00" in value:
        raise invalid_input(
            [FieldProblem(field, f"must be 1 to {MAX_TEXT} characters, without NUL")]
        )
    return value


def _event_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid_input(
            [FieldProblem("event_id", f"must be a UUID, such as {uuid.UUID(int=1)}")]
        ) from None


def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    raw = request.scope["query_string"]
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise invalid_input([FieldProblem("query", "must be UTF-8")]) from None
    found: dict[str, str] = {}
    problems: list[FieldProblem] = []
    for key, value in pairs:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            problems.append(FieldProblem(key, f"is not a parameter here; known: {known}"))
        elif key in found:
            problems.append(FieldProblem(key, "is given twice; give it once"))
        elif value == "":
            problems.append(FieldProblem(key, "is empty; give a value or leave it out"))
        else:
            found[key] = value
    if problems:
        raise invalid_input(problems)
    return found


def _whole(raw: str, field: str, *, minimum: int) -> int:
    if not raw.isdigit() or len(raw) > 19 or int(raw) < minimum:
        raise invalid_input(
            [FieldProblem(field, f"must be a whole number of at least {minimum}, not {raw!r}")]
        )
    return int(raw)


def _limit(raw: str | None) -> int:
    if raw is None:
        return PAGE
    limit = _whole(raw, "limit", minimum=1)
    if limit > MAX_PAGE:
        raise invalid_input([FieldProblem("limit", f"must be at most {MAX_PAGE}, not {limit}")])
    return limit


async def _body(request: Request, kind: type[B] | None) -> B | None:
    """The JSON body as ``kind`` (None: the route takes ``{}`` or nothing)."""
    headers = request.headers
    content_type = headers.get("content-type")
    if content_type is None:
        # No body, no type: a browser sends none only from a script of this very page
        # (another site's request would carry a form type, refused below).
        body = await accept.read_body(request.receive, BODY_LIMIT, None)
        accept.refuse_bodiless_data(body)
        return None
    accept.require_json(content_type.encode("latin-1"))
    length = headers.get("content-length")
    body = await accept.read_body(
        request.receive, BODY_LIMIT, length.encode("latin-1") if length else None
    )
    if kind is None:
        accept.decode_body(None, body or b"{}")
        return None
    decoded: B = accept.decode_body(msgspec.json.Decoder(kind), body or b"{}")
    return decoded


async def _report(ops: Operations, name: str) -> ProjectionReport:
    ops.names(name)
    for report in await ops.status():
        if report.name == name:
            return report
    raise not_found(f"projection {name!r} has no bookkeeping yet; start the service once")


async def _check_parked_stream(
    ops: Operations, name: str, stream_id: str | None
) -> list[DeadLetter]:
    letters = await ops.dead_letters(name)
    if stream_id is not None:
        letters = [d for d in letters if d.stream_id == stream_id]
        if not letters:
            raise not_found(
                f"no event of stream {stream_id!r} is parked by {name!r}; nothing was changed"
            )
    return letters


# -- output --------------------------------------------------------------------------------


def _event(record: RecordedEvent) -> EventOut:
    return msgspec.convert(decode_event(record), EventOut)


def _found(found: Found) -> EventsFound:
    return EventsFound(
        events=[_event(e) for e in found.events], scanned=found.scanned, complete=found.complete
    )


def _letter(letter: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        projection=letter.projection,
        position=letter.position,
        stream_id=letter.stream_id,
        error=letter.error,
        parked_at=letter.parked_at.isoformat(),
        event=_event(letter.record),
    )
