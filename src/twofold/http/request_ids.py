"""``X-Request-Id``: taken from the request (or made up) and echoed in the answer.

The id, and the correlation id (``X-Correlation-Id``, else the request id), are set for the
request's whole handling (``twofold.logs``), so every log line written meanwhile names them.
``ObserveRequests`` (``twofold.http.observe``), the one middleware twofold runs per
request, calls ``take_ids`` first and ``release_ids`` last, and echoes the id: one layer
and one wrapped ``send`` for ids, timing and tracing, as every request pays for each layer.
"""

from __future__ import annotations

import os
from contextvars import Token

from starlette.types import Scope

from twofold.logs import correlation_id, request_id

__all__ = ["RequestIdTokens", "release_ids", "take_ids"]

_LONGEST = 200

RequestIdTokens = tuple[Token[str | None], Token[str | None]]


def _usable(value: bytes | None) -> str | None:
    """The header's value as text, when it is a fit id: 1 to 200 printable ASCII."""
    if value is None or not 0 < len(value) <= _LONGEST or not value.isascii():
        return None
    text = value.decode("ascii")
    return text if text.isprintable() else None


def take_ids(scope: Scope) -> tuple[bytes, RequestIdTokens]:
    """Set the request's ids for its handling; the request id to echo, and the tokens
    ``release_ids`` takes back."""
    given = correlation = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value
        elif name == b"x-correlation-id":
            correlation = value
    # 128 random bits as 32 hex digits, like a UUID's hex, at a quarter of uuid4's cost.
    text = _usable(given) or os.urandom(16).hex()
    tokens = (request_id.set(text), correlation_id.set(_usable(correlation) or text))
    return text.encode("ascii"), tokens


def release_ids(tokens: RequestIdTokens) -> None:
    request_id.reset(tokens[0])
    correlation_id.reset(tokens[1])
