"""``X-Request-Id``: taken from the request (or made up) and echoed in the answer.

The id, and the correlation id (``X-Correlation-Id``, else the request id), are set for the
request's whole handling (``twofold.logs``), so every log line written meanwhile names them.
"""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twofold.logs import correlation_id, request_id

__all__ = ["RequestIds"]

_LONGEST = 200


def _usable(value: bytes | None) -> str | None:
    """The header's value as text, when it is a fit id: 1 to 200 printable ASCII."""
    if value is None or not 0 < len(value) <= _LONGEST or not value.isascii():
        return None
    text = value.decode("ascii")
    return text if text.isprintable() else None


class RequestIds:
    """ASGI middleware: one id per request, in the answer's headers and in the logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = correlation = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
            elif name == b"x-correlation-id":
                correlation = value
        text = _usable(given) or uuid.uuid4().hex
        echoed = text.encode("ascii")
        request_token = request_id.set(text)
        correlation_token = correlation_id.set(_usable(correlation) or text)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", echoed)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(request_token)
            correlation_id.reset(correlation_token)
