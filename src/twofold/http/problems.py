"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the HTTP layer answers has the same body::

    {"type": "urn:twofold:problem:invalid-input", "title": "Invalid input", "status": 422,
     "detail": "...", "instance": "/api/orders", "errors": [{"field": ..., "message": ...}]}

``type`` is a stable URN per kind of problem, so clients branch on it rather than on the
text. Mapping from twofold's typed errors to a status is one table (``problem_for``): a
command refused for any reason has recorded nothing, whatever the status.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from twofold.domain.messages import ID_PATTERN, ID_RULE
from twofold.errors import (
    AggregateExistsError,
    AggregateNotFoundError,
    ConcurrencyError,
    ConsistencyTimeoutError,
    DomainRuleError,
    FieldError,
    ForeignViewsError,
    IdempotencyKeyReusedError,
    PositionBeyondHeadError,
    TwofoldError,
    ValidationError,
)

__all__ = [
    "PROBLEM_JSON",
    "FieldProblem",
    "Problem",
    "ProblemError",
    "invalid_input",
    "problem_for",
]

PROBLEM_JSON = b"application/problem+json"
_TYPE = "urn:twofold:problem:"


class FieldProblem(msgspec.Struct, frozen=True):
    """One input field at fault: ``items[0].quantity``, ``Idempotency-Key``."""

    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem; the optional members appear only for the problems they fit."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None
    """invalid-input: every field at fault."""
    projection: str | None = None
    """view-behind: the view that lags, where it is, and what was asked for."""
    position: int | None = None
    min_position: int | None = None
    behind: int | None = None
    current_version: int | None = None
    """version-mismatch: the aggregate's version now."""


class ProblemError(TwofoldError):
    """Raised inside the HTTP layer to answer with a problem (and extra headers)."""

    def __init__(self, problem: Problem, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.problem = problem
        self.headers = list(headers)
        super().__init__(problem.detail)


def problem(status: int, slug: str, title: str, detail: str, **extra: object) -> Problem:
    return Problem(type=_TYPE + slug, title=title, status=status, detail=detail, **extra)  # type: ignore[arg-type]


def invalid_input(errors: Sequence[FieldError | FieldProblem], detail: str = "") -> ProblemError:
    fields = [FieldProblem(e.field, e.message) for e in errors]
    if not detail:
        detail = "; ".join(f"{f.field}: {f.message}" for f in fields)
        detail = f"invalid input ({detail}); correct these fields and send again"
    return ProblemError(problem(422, "invalid-input", "Invalid input", detail, errors=fields))


# msgspec names the place of a decoding error as a JSON path: "... - at `$.items[0].price`".
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
# Patterns whose rule reads better in words than as the regular expression msgspec quotes.
_RULES = {f"Expected `str` matching regex {ID_PATTERN!r}": ID_RULE}


def decoding_problem(
    error: msgspec.ValidationError | msgspec.DecodeError, where: str
) -> ProblemError:
    """A msgspec error as invalid-input, naming the field (``items[0].price``) it concerns.

    ``where`` is what was decoded (``body``, ``query``); it names the field when the error
    concerns the whole document (not JSON, not an object).
    """
    text = str(error)
    if not isinstance(error, msgspec.ValidationError):  # ValidationError is a DecodeError
        return invalid_input([FieldProblem(where, f"is not valid JSON: {text}")])
    match = _AT.match(text)
    assert match is not None  # the pattern matches any text
    message, path = match["message"], (match["path"] or "").lstrip(".")
    missing = _MISSING.match(message)
    if missing:
        field = f"{path}.{missing['field']}" if path else missing["field"]
        return invalid_input([FieldProblem(field, "is required")])
    return invalid_input([FieldProblem(path or where, _RULES.get(message, message))])


def problem_for(error: BaseException, *, if_match: bool = False) -> ProblemError | None:
    """The problem answering one of twofold's errors; None for an unexpected error.

    ``if_match``: the client named the version it expects, so a version conflict is its
    precondition failing (412) rather than a race the bus could not resolve (409).
    """
    if isinstance(error, ProblemError):
        return error
    if isinstance(error, ValidationError):
        return invalid_input(error.errors)
    if isinstance(error, IdempotencyKeyReusedError):
        detail = (
            "this Idempotency-Key was used before with a different request; "
            "use a new key for a new request"
        )
        return invalid_input([FieldProblem("Idempotency-Key", detail)], detail)
    if isinstance(error, AggregateNotFoundError):
        return ProblemError(problem(404, "not-found", "Not found", str(error)))
    if isinstance(error, AggregateExistsError):
        return ProblemError(problem(409, "already-exists", "Already exists", str(error)))
    if isinstance(error, DomainRuleError):
        slug = error.code.replace("_", "-")
        return ProblemError(problem(409, slug, "Refused by a business rule", str(error)))
    if isinstance(error, ConcurrencyError) and not if_match:
        detail = f"{error.stream_id!r} kept changing while this command ran; send it again"
        return ProblemError(problem(409, "concurrent-update", "Conflict", detail))
    if isinstance(error, ConcurrencyError):
        detail = (
            f"the resource is at version {error.actual}, not the version {error.expected} "
            "named in If-Match; read it again and decide again"
        )
        return ProblemError(
            problem(
                412,
                "version-mismatch",
                "Precondition failed",
                detail,
                current_version=error.actual,
            )
        )
    if isinstance(error, PositionBeyondHeadError):
        found = invalid_input([FieldProblem("min_position", str(error))], str(error))
        found.problem = msgspec.structs.replace(
            found.problem, position=error.head, min_position=error.wanted
        )
        return found
    if isinstance(error, ForeignViewsError):
        return ProblemError(
            problem(
                503,
                "foreign-views",
                "Views of another event store",
                str(error),
                projection=error.projection,
            )
        )
    if isinstance(error, ConsistencyTimeoutError):
        return ProblemError(
            problem(
                503,
                "view-behind",
                "View not up to date",
                str(error),
                projection=error.projection,
                position=error.current,
                min_position=error.wanted,
                behind=error.behind,
            ),
            headers=[(b"retry-after", b"1")],
        )
    return None


def not_found(detail: str) -> ProblemError:
    return ProblemError(problem(404, "not-found", "Not found", detail))


def internal_error() -> ProblemError:
    return ProblemError(
        problem(
            500,
            "internal-error",
            "Internal server error",
            "the server failed while answering and logged the error; to learn whether a "
            "command was recorded, repeat it with the same Idempotency-Key",
        )
    )


_encoder = msgspec.json.Encoder()


def encode_problem(error: ProblemError, instance: str | None) -> bytes:
    body = error.problem
    if instance is not None and body.instance is None:
        body = msgspec.structs.replace(body, instance=instance)
    return _encoder.encode(body)
