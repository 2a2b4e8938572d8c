"""What the edge accepts (DESIGN 7a): the checks every request passes before a handler runs.

- Path parameters are ids (``twofold.http.Id``).
- Command bodies are JSON (``application/json`` or a ``+json`` type, UTF-8; 415 otherwise),
  at most the body limit (413), and hold no text a store cannot keep (NUL, lone
  surrogates: 422 naming the field).
- ``If-Match`` is one quoted version (or a read's ETag); ``Idempotency-Key`` is 1 to 255
  visible ASCII characters; positions are whole numbers up to 2^63 - 1.
- A query takes only its declared parameters, each once, whole numbers as digits.

Each refusal is a ProblemError naming the field, and each rule that has a form is also a
pattern here, which the OpenAPI document declares, so that schema and server agree.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import msgspec
import msgspec.inspect

from twofold.domain.messages import id_problem, unstorable_text
from twofold.http.problems import (
    FieldProblem,
    ProblemError,
    decoding_problem,
    invalid_input,
    problem,
)

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "IF_MATCH_PATTERN",
    "MAX_POSITION",
    "POSITION_PATTERN",
    "check_path",
    "decode_body",
    "idempotency_key",
    "if_match",
    "is_whole_number",
    "read_body",
    "refuse_bodiless_data",
    "require_json",
    "whole_number_problem",
]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

MAX_POSITION = 2**63 - 1
IF_MATCH_PATTERN = r'^(W/)?"[0-9]{1,18}(\.[0-9a-f]{16})?"$'
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
_IF_MATCH = re.compile(rb'(?:W/)?"([0-9]{1,18})(?:\.[0-9a-f]{16})?"')
_IDEMPOTENCY_KEY = re.compile(rb"[!-~]{1,255}")
_INTEGER = re.compile(r"-?[0-9]{1,20}")


def _at_most(limit: int) -> str:
    """A pattern for the digits (leading zeros allowed) of a whole number from 0 to
    ``limit``, in at most as many digits as ``limit`` has: a smaller number of that length
    agrees with ``limit`` digit by digit up to one that is less."""
    digits = str(limit)
    shorter = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    same_length = [
        digits[:i] + f"[0-{int(digits[i]) - 1}]" + _any_digits(len(digits) - i - 1)
        for i in range(len(digits))
        if digits[i] != "0"
    ]
    return "^(" + "|".join([*shorter, *same_length, digits]) + ")$"


def _any_digits(count: int) -> str:
    return f"[0-9]{{{count}}}" if count else ""


POSITION_PATTERN = _at_most(MAX_POSITION)
"""0 to 2^63 - 1 in digits: what ``min_position`` and ``Twofold-Min-Position`` accept."""


# -- path ---------------------------------------------------------------------------------


def check_path(path_params: Mapping[str, str]) -> None:
    """Path parameters are ids (``twofold.http.Id``): anything else is refused naming it."""
    problems: list[FieldProblem] = []
    for name, value in path_params.items():
        message = id_problem(value)
        if message is not None:
            problems.append(FieldProblem(name, message))
    if problems:
        raise invalid_input(problems)


# -- headers ------------------------------------------------------------------------------


def if_match(value: bytes | None) -> int | None:
    """The version in ``If-Match: "3"``, or in an ETag a query answered (``"3.<digest>"``:
    its version counts); weak tags compare the same. None when absent."""
    if value is None:
        return None
    found = _IF_MATCH.fullmatch(value.strip())
    if found is not None:
        return int(found[1])
    message = (
        'must be one entity tag holding a version of 1 to 18 digits, as "3", or a read\'s ETag'
    )
    raise invalid_input([FieldProblem("If-Match", message)])


def idempotency_key(value: bytes | None) -> str | None:
    if value is None:
        return None
    if _IDEMPOTENCY_KEY.fullmatch(value) is None:
        message = "must be 1 to 255 visible ASCII characters (no spaces), such as a UUID"
        raise invalid_input([FieldProblem("Idempotency-Key", message)])
    return value.decode("ascii")


def require_json(content_type: bytes) -> None:
    """Refuse (415) a body that is not JSON: ``application/json`` or a ``+json`` type, in
    UTF-8. Browsers send ``text/plain`` across sites without asking first (no CORS
    preflight), so reading it as JSON would let any web page record commands."""
    media, _, parameters = content_type.partition(b";")
    media = media.strip().lower()
    if media != b"application/json" and not (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        raise _not_json(f"the body is {media.decode('latin-1')!r}")
    charset = _charset(parameters)
    if charset not in (None, b"utf-8", b"utf8"):
        raise _not_json(f"the charset is {charset.decode('latin-1')!r}, and JSON is UTF-8")


def refuse_bodiless_data(body: bytes) -> None:
    """A request without a Content-Type is a command without fields: it carries no body."""
    if body:
        raise _not_json("the body has no Content-Type")


def _not_json(reason: str) -> ProblemError:
    message = f"must be application/json (or a +json type): {reason}"
    return ProblemError(
        problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"Content-Type {message}; send the command as JSON",
            errors=[FieldProblem("Content-Type", message)],
        ),
        headers=[(b"accept-post", b"application/json")],
    )


def _charset(parameters: bytes) -> bytes | None:
    for parameter in parameters.split(b";"):
        name, _, value = parameter.partition(b"=")
        if name.strip().lower() == b"charset":
            return value.strip().strip(b'"').lower()
    return None


# -- body ---------------------------------------------------------------------------------


async def read_body(receive: Receive, limit: int, length: bytes | None) -> bytes:
    """The whole body, or 413 as soon as it is known to pass ``limit`` bytes."""
    if length is not None and length.isdigit() and int(length[:20]) > limit:
        raise _too_large(limit)  # refused before reading a byte of it
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ProblemError(problem(400, "disconnected", "Bad request", "client went away"))
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> ProblemError:
    message = f"is larger than the limit of {limit} bytes"
    return ProblemError(
        problem(
            413,
            "body-too-large",
            "Content too large",
            f"the body {message}; send a smaller one",
            errors=[FieldProblem("body", message)],
        )
    )


def decode_body(decoder: msgspec.json.Decoder[Any] | None, body: bytes) -> Any:
    """The body decoded (None for a route without fields, which still takes only an object),
    or 422 naming the field at fault."""
    if not body.isascii():
        try:  # msgspec skips unknown fields unread: the body as a whole must be UTF-8
            body.decode()
        except UnicodeDecodeError as error:
            message = f"must be UTF-8 text (byte {error.start} is not)"
            raise invalid_input([FieldProblem("body", message)]) from None
    try:
        if decoder is None:
            msgspec.json.decode(body, type=dict)
            return None
        try:
            decoded = decoder.decode(body)
        except msgspec.ValidationError as error:
            if "got `float`" not in str(error):
                raise
            # JSON Schema's integers are numbers without a fraction, 2.0 among them.
            decoded = msgspec.convert(_whole(msgspec.json.decode(body)), decoder.type)
    except msgspec.DecodeError as error:  # ValidationError is a DecodeError
        raise decoding_problem(error, "body") from None
    except RecursionError:
        raise invalid_input(
            [FieldProblem("body", "is nested too deeply to decode; send a flatter document")]
        ) from None
    # NUL and lone surrogates reach a decoded text only through a \u escape.
    if b"\\u" in body:
        problems = unstorable_text(decoded)
        if problems:
            raise invalid_input([FieldProblem(name, text) for name, text in problems.items()])
    return decoded


def _whole(value: Any) -> Any:
    """``value`` with every float that has no fraction (``2.0``) as an int."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


# -- query --------------------------------------------------------------------------------


def is_whole_number(info: msgspec.inspect.Type) -> bool:
    """Whether a parameter's type is a whole number (optional or constrained)."""
    if isinstance(info, msgspec.inspect.Metadata):
        return is_whole_number(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        return any(is_whole_number(option) for option in info.types)
    return isinstance(info, msgspec.inspect.IntType)


def whole_number_problem(value: str) -> str | None:
    """A whole-number parameter is digits (``1e3`` and ``1.0`` are not, in a query)."""
    if _INTEGER.fullmatch(value) is None:
        return "must be a whole number written in digits, such as 2"
    return None
