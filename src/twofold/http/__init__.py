"""twofold over HTTP: an ASGI app (Starlette + msgspec) for any ``Service``.

Declare routes on an ``HttpApi``; it serves them with JSON bodies, problem details
(RFC 9457), API keys with scopes, Idempotency-Key, If-Match, ``min_position`` for reading
your own writes, ETags, OpenAPI at ``/openapi.json``, docs at ``/docs`` and ``/health``.
"""

from twofold.http.api import Call, CommandRoute, HttpApi, Id, QueryRoute
from twofold.http.endpoints import CommandAccepted
from twofold.http.health import CacheHealth, Health, ProjectionHealth
from twofold.http.problems import FieldProblem, Problem

__all__ = [
    "CacheHealth",
    "Call",
    "CommandAccepted",
    "CommandRoute",
    "FieldProblem",
    "Health",
    "HttpApi",
    "Id",
    "Problem",
    "ProjectionHealth",
    "QueryRoute",
]
