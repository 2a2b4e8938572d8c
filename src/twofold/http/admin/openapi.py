"""The admin API in the OpenAPI document: every ``/admin/api/`` route, its input and answers.

Projection names are an enum of the service's projections, so that a client generated from
the document (or a fuzzer) names only projections that exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from twofold.application.operations import ProjectionReport
from twofold.http.admin.jobs import Job
from twofold.http.admin.routes import MAX_PAGE, MAX_TEXT, PAGE
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

__all__ = ["admin_paths"]

_REF = "#/components/schemas/{name}"
_TAG = ["admin"]
_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": "^[^\\u0000]+$"}
_POSITION = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
_WHY = {
    401: "No valid API key (when keys are configured)",
    403: "The key lacks the admin scope; or, without keys, the client is not this machine",
    404: "No such projection, stream, event, job or parked event",
    409: "The operation is refused in the projection's present state",
    413: "The body is larger than the limit",
    415: "The body is not JSON",
    422: "Invalid input (a path or query parameter, or the body): the `errors` member lists "
    "each field at fault; nothing was changed",
    503: "The service is starting or stopping",
}
_TYPES: list[Any] = [
    ActionDone,
    DeadLetterOut,
    DeadLetters,
    EventOut,
    EventsFound,
    Job,
    Overview,
    ProjectionReport,
    Projections,
    Released,
    RetryBody,
    SkipBody,
    StreamEvents,
    Streams,
    VerifyBody,
    VerifyOut,
]


def _ref(kind: Any) -> dict[str, Any]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _answer(kind: Any, description: str, *statuses: int) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": description, "content": {"application/json": {"schema": _ref(kind)}}}
    }
    for status in (401, 403, 422, 503, *statuses):
        responses[str(status)] = {
            "description": _WHY[status],
            "content": {"application/problem+json": {"schema": _ref_name("Problem")}},
        }
    return responses


def _ref_name(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: Sequence[dict[str, Any]] = (),
    body: Any = None,
    description: str = "",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": _TAG,
        "parameters": list(parameters),
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def admin_paths(projections: Sequence[str], components: dict[str, Any]) -> dict[str, Any]:
    """The admin routes as OpenAPI paths; their schemas are added to ``components``."""
    _, found = msgspec.json.schema_components(_TYPES, ref_template=_REF)
    components.update(found)
    name = _path("name", {"type": "string", "enum": sorted(projections)})
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": PAGE})
    event_id = _path("event_id", {"type": "string", "format": "uuid"})
    with_body = (413, 415, 422)
    job_answer = {
        "description": "The rebuild runs (or, when one of this projection ran already, that "
        "one): poll the job at Location",
        "headers": {"Location": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ref(Job)}},
    }
    rebuild = _answer(Job, "With Accept: text/event-stream: the job's progress as it goes", 404)
    rebuild["200"]["content"] = {
        "text/event-stream": {
            "schema": {"type": "string"},
            "example": 'event: progress\ndata: {"done": 1000, "total": 5000, ...}\n\n',
        }
    }
    rebuild["202"] = job_answer
    for status in with_body:
        rebuild[str(status)] = _answer(Job, "", status)[str(status)]

    def action(verb: str, summary: str) -> dict[str, Any]:
        return {
            "post": _operation(
                f"admin_{verb}",
                summary,
                _answer(ActionDone, "Done; the projection's state right after", 404, *with_body),
                parameters=[name],
            )
        }

    return {
        "/admin/api/overview": {
            "get": _operation(
                "admin_overview",
                "Health, head position, commands/s and p99 latencies",
                _answer(Overview, "The overview"),
            )
        },
        "/admin/api/projections": {
            "get": _operation(
                "admin_projections",
                "Every projection: status, position, lag, parked events, last error",
                _answer(Projections, "The projections"),
            )
        },
        "/admin/api/projections/{name}": {
            "get": _operation(
                "admin_projection",
                "One projection's status",
                _answer(ProjectionReport, "The projection", 404),
                parameters=[name],
            )
        },
        "/admin/api/projections/{name}/rebuild": {
            "post": _operation(
                "admin_rebuild",
                "Rebuild a projection blue/green (a job; its progress as events on request)",
                rebuild,
                parameters=[name],
                description="The log is replayed into a fresh copy of the views while the "
                "live copy serves; the copy replaces it once caught up.",
            )
        },
        "/admin/api/projections/{name}/reset": action(
            "reset", "Empty a projection's views and replay the log into them"
        ),
        "/admin/api/projections/{name}/pause": action("pause", "Stop applying events"),
        "/admin/api/projections/{name}/resume": action("resume", "Apply events again"),
        "/admin/api/jobs/{job_id}": {
            "get": _operation(
                "admin_job",
                "A rebuild job of the worker process that answers",
                _answer(Job, "The job", 404),
                parameters=[_path("job_id", {"type": "string", "pattern": "^[0-9a-f]{32}$"})],
            )
        },
        "/admin/api/dead-letters": {
            "get": _operation(
                "admin_dead_letters",
                "Parked events with their data and error, per projection and stream",
                _answer(DeadLetters, "The parked events", 404, 422),
                parameters=[
                    _query("projection", {"type": "string", "enum": sorted(projections)}),
                    _query("stream_id", _TEXT),
                ],
            )
        },
        "/admin/api/projections/{name}/dead-letters/{position}": {
            "get": _operation(
                "admin_dead_letter",
                "One parked event",
                _answer(DeadLetterOut, "The parked event", 404),
                parameters=[
                    name,
                    _path("position", _POSITION),
                ],
            )
        },
        "/admin/api/projections/{name}/dead-letters/retry": {
            "post": _operation(
                "admin_retry",
                "Apply parked events again, stream by stream in order",
                _answer(
                    Released,
                    "How many applied; a stream that fails again stays parked",
                    404,
                    *with_body,
                ),
                parameters=[name],
                body=RetryBody,
            )
        },
        "/admin/api/projections/{name}/dead-letters/skip": {
            "post": _operation(
                "admin_skip",
                "Drop parked events without applying them",
                _answer(Released, "How many were dropped", 404, *with_body),
                parameters=[name],
                body=SkipBody,
            )
        },
        "/admin/api/streams": {
            "get": _operation(
                "admin_streams",
                "A page of the log's streams, in id order",
                _answer(Streams, "The page", 422),
                parameters=[_query("after", _TEXT), limit],
            )
        },
        "/admin/api/streams/{stream_id}": {
            "get": _operation(
                "admin_stream",
                "A page of a stream's events with data and metadata",
                _answer(StreamEvents, "The page", 404, 422),
                parameters=[
                    _path("stream_id", _TEXT),
                    _query("from_version", {**_POSITION, "default": 1}),
                    limit,
                ],
            )
        },
        "/admin/api/events/{event_id}": {
            "get": _operation(
                "admin_event",
                "One event, found by its id",
                _answer(EventOut, "The event", 404, 422),
                parameters=[event_id],
                description="Found by reading the log (the newest 200,000 events at most).",
            )
        },
        "/admin/api/events/{event_id}/caused": {
            "get": _operation(
                "admin_caused",
                "The events whose causation_id is this event's id",
                _answer(EventsFound, "The events, and how much of the log was read", 422),
                parameters=[event_id, limit],
            )
        },
        "/admin/api/correlations": {
            "get": _operation(
                "admin_correlated",
                "The events of one correlation id, in log order",
                _answer(EventsFound, "The events, and how much of the log was read", 422),
                parameters=[_query("correlation_id", _TEXT, required=True), limit],
            )
        },
        "/admin/api/verify": {
            "post": _operation(
                "admin_verify",
                "Replay the log into a scratch copy and compare it with the live views",
                _answer(
                    VerifyOut,
                    "The differences, per projection and collection",
                    404,
                    *with_body,
                ),
                body=VerifyBody,
            )
        },
    }
