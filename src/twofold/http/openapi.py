"""OpenAPI 3.1 for an ``HttpApi``, generated from the msgspec types its routes declare.

Every route documents its request (body or parameters, and the headers twofold reads),
its success and every problem it may answer, so a client generator or a fuzzer such as
schemathesis sees the whole contract. Schemas come from ``msgspec.json.schema_components``,
the same types that decode requests, so the document cannot drift from the code; the
limits the edge itself enforces (ids in paths, If-Match, Idempotency-Key, positions, text
without NUL) are declared here too, so that no request valid by the schema is refused 422.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from twofold.domain.messages import ID_PATTERN, MAX_ID_LENGTH
from twofold.http.accept import (
    IDEMPOTENCY_KEY_PATTERN,
    IF_MATCH_PATTERN,
    MAX_POSITION,
    POSITION_PATTERN,
)
from twofold.http.admin.openapi import admin_paths
from twofold.http.api import CommandRoute, HttpApi, QueryRoute
from twofold.http.endpoints import MAX_TIMEOUT_MS, CommandAccepted
from twofold.http.health import Health, Liveness, Readiness
from twofold.http.problems import Problem

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"
_PROBLEM = "application/problem+json"

_STATUS_TEXT = {
    304: "Not modified: the answer still has the ETag given in If-None-Match",
    401: "No valid API key (when keys are configured)",
    403: "The API key lacks the scope this route needs",
    404: "No such resource",
    409: "Refused by a business rule, or the resource exists already; nothing was recorded",
    412: "If-Match names a version the resource has moved on from; nothing was recorded",
    413: "The body is larger than the limit; nothing was recorded",
    415: "The body is not JSON (application/json or a +json type); nothing was recorded",
    422: "Invalid input: the `errors` member lists each field at fault; nothing was recorded",
    503: "The view did not reach `min_position` in time (see Retry-After), or not ready",
}


def openapi_document(api: HttpApi, *, auth: bool) -> dict[str, Any]:
    types: list[Any] = [Problem, CommandAccepted, Health, Liveness, Readiness]
    types += [r.body for r in api.commands if r.body is not None]
    types += [r.response for r in api.queries]
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for command in api.commands:
        paths.setdefault(_openapi_path(command.path), {})[command.method.lower()] = (
            _command_operation(command)
        )
    for query in api.queries:
        paths.setdefault(_openapi_path(query.path), {})["get"] = _query_operation(query, components)
    paths["/health"] = {"get": _health_operation()}
    paths["/health/live"] = {"get": _live_operation()}
    paths["/health/ready"] = {"get": _ready_operation()}
    projections = [p.name for p in api.service.projection_instances()]
    paths.update(admin_paths(projections, components))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": api.title, "version": api.version, "description": api.description},
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


def _openapi_path(path: str) -> str:
    # Starlette's converters ({id:int}) are not OpenAPI; the plain {name} is.
    return re.sub(r"{([^}:]+)(:[^}]+)?}", r"{\1}", path)


def _problems(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": _STATUS_TEXT[status],
            "content": {_PROBLEM: {"schema": {"$ref": _REF.format(name="Problem")}}},
        }
        for status in statuses
    }


def _header(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "schema": schema}


_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": ID_PATTERN,
    "description": "An id: 1 to 128 letters, digits or -_.:@, starting with a letter or digit",
}
# Text holds no NUL: no store keeps it (the edge refuses it in every text it is sent).
_NO_NUL = "^[^\\u0000]*$"


def _path_params(route: CommandRoute | QueryRoute) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": dict(_ID_SCHEMA)}
        for name in route.path_params
    ]


def _storable(schema: dict[str, Any]) -> dict[str, Any]:
    """A text parameter's schema, declaring that it holds no NUL when nothing else does."""
    if schema.get("type") == "string" and not {"pattern", "enum", "const"} & schema.keys():
        return {**schema, "pattern": _NO_NUL}
    return schema


def _command_operation(route: CommandRoute) -> dict[str, Any]:
    parameters = _path_params(route)
    parameters.append(
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "A repeat with the same key and body returns the first answer "
            "and records nothing; the same key with another body is refused (422).",
            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
        }
    )
    if route.path_params:
        parameters.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "description": 'The version the client saw, as an entity tag ("3"); '
                "412 when the resource has moved on.",
                "schema": {"type": "string", "pattern": IF_MATCH_PATTERN, "examples": ['"3"']},
            }
        )
    headers = {
        "Twofold-Position": _header(
            {"type": "integer"}, "Log position of this write: pass it as min_position"
        )
    }
    if route.location is not None:
        headers["Location"] = _header({"type": "string"}, "URL of the created resource")
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": list(route.tags),
        "parameters": parameters,
        "responses": {
            str(route.status): {
                "description": "Recorded (or, for a repeated Idempotency-Key, the first answer)",
                "headers": headers,
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(name="CommandAccepted")}}
                },
            },
            **_problems(401, 403, 404, 409, 412, 413, 415, 422, 503),
        },
    }
    if route.description:
        operation["description"] = route.description
    schema = (
        msgspec.json.schema_components([route.body], ref_template=_REF)[0][0]
        if route.body is not None
        else {"type": "object"}
    )
    operation["requestBody"] = {
        "required": route.body is not None,
        "content": {"application/json": {"schema": schema}},
    }
    return operation


def _query_operation(route: QueryRoute, components: dict[str, Any]) -> dict[str, Any]:
    parameters = _path_params(route)
    if route.params is not None:
        (ref,), found = msgspec.json.schema_components([route.params], ref_template=_REF)
        name = ref["$ref"].rsplit("/", 1)[1]
        params = found.pop(name)
        components.update(found)  # types the parameters use (enums...)
        required = set(params.get("required", ()))
        by_name = {p["name"]: p for p in parameters}
        for field, schema in params.get("properties", {}).items():
            if field in by_name:
                # A path parameter is an id, whatever its field says, unless it says more.
                if schema.get("type") != "string" or "pattern" in schema:
                    by_name[field]["schema"] = schema
                continue
            parameters.append(
                {
                    "name": field,
                    "in": "query",
                    "required": field in required,
                    "schema": _storable(_not_null(schema)),
                }
            )
    parameters += [
        {
            "name": "min_position",
            "in": "query",
            "required": False,
            "description": "Answer from views that reflect at least this log position "
            "(a command's `position`); waits up to timeout_ms, then 503.",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_POSITION},
        },
        {
            "name": "timeout_ms",
            "in": "query",
            "required": False,
            "description": "How long to wait for min_position, in milliseconds.",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TIMEOUT_MS, "default": 5000},
        },
        {
            "name": "Twofold-Min-Position",
            "in": "header",
            "required": False,
            "description": "The same as min_position (the query parameter wins): a whole "
            "number from 0 to 2^63 - 1.",
            "schema": {"type": "string", "pattern": POSITION_PATTERN},
        },
    ]
    headers: dict[str, Any] = {}
    if route.cache_control is not None:
        headers["Cache-Control"] = _header({"type": "string"}, "How long the answer may be reused")
    if route.etag is not None:
        headers["ETag"] = _header(
            {"type": "string"},
            'The answer\'s version and a digest of it, as "<version>.<digest>": it changes '
            "whenever the answer does; If-Match takes it too",
        )
        parameters.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "An ETag from an earlier answer: 304 while it is current.",
                "schema": {"type": "string"},
            }
        )
    (schema,), found = msgspec.json.schema_components([route.response], ref_template=_REF)
    components.update(found)
    responses: dict[str, Any] = {
        "200": {
            "description": "The answer",
            "headers": headers,
            "content": {"application/json": {"schema": schema}},
        }
    }
    if route.etag is not None:
        responses["304"] = {"description": _STATUS_TEXT[304], "headers": headers}
    responses.update(_problems(401, 403, 404, 422, 503))
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": list(route.tags),
        "parameters": parameters,
        "responses": responses,
    }
    if route.description:
        operation["description"] = route.description
    return operation


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or text: its schema has no null (``X | None = None``)."""
    options = schema.get("anyOf")
    if options is None or {"type": "null"} not in options:
        return schema
    rest = [o for o in options if o != {"type": "null"}]
    unwrapped = dict(rest[0]) if len(rest) == 1 else {"anyOf": rest}
    for key, value in schema.items():
        if key not in ("anyOf", "default") and key not in unwrapped:
            unwrapped[key] = value
    if schema.get("default") is not None:
        unwrapped["default"] = schema["default"]
    return unwrapped


def _live_operation() -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": _REF.format(name="Liveness")}}}
    return {
        "operationId": "healthLive",
        "summary": "Liveness: the process answers",
        "description": "Always 200 while the process answers; it touches no store.",
        "tags": ["operations"],
        "security": [],
        "responses": {"200": {"description": "The process answers", "content": content}},
    }


def _ready_operation() -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": _REF.format(name="Readiness")}}}
    return {
        "operationId": "healthReady",
        "summary": "Readiness: the stores answer and no projection is stopped",
        "description": "503 when a store does not answer or a projection is stopped or "
        "refuses its views (GET /health says why).",
        "tags": ["operations"],
        "security": [],
        "responses": {
            "200": {"description": "Ready to serve", "content": content},
            "503": {"description": "A store is down or a projection stopped", "content": content},
        },
    }


def _health_operation() -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": _REF.format(name="Health")}}}
    return {
        "operationId": "health",
        "summary": "Health of every projection",
        "description": "DOWN (503) when a projection is stopped or lags more than the "
        "threshold (TWOFOLD_LAG_THRESHOLD seconds). DEGRADED (200) when a projection retries, "
        "has parked events or is paused, a circuit breaker is open, or the cache "
        "(TWOFOLD_CACHE) is away: queries then answer from the read store; the cache never "
        "makes the service DOWN.",
        "tags": ["operations"],
        "security": [],
        "responses": {
            "200": {"description": "Every projection runs and keeps up", "content": content},
            "503": {"description": "A projection is stopped or lags", "content": content},
        },
    }
