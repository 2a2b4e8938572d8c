"""The ASGI endpoints behind declared routes: one class for commands, one for queries.

They are plain ASGI callables, not Starlette request/response functions: the hot path reads
the few headers it needs from the scope once, and sends pre-built header lists, so a route
costs little more than the command or query it runs. Every failure is answered as problem
details; an unexpected one is logged and answered 500 without its internals.

Before anything runs, each request passes the checks of ``twofold.http.accept`` (what the
edge accepts: ids, JSON bodies, limits, declared parameters).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote

import msgspec
import msgspec.inspect

from twofold.application.app import App
from twofold.domain.messages import Metadata, unstorable_text
from twofold.http import accept
from twofold.http.accept import MAX_POSITION
from twofold.http.api import Call, CommandRoute, Id, QueryRoute
from twofold.http.auth import ApiKeys, Principal
from twofold.http.problems import (
    PROBLEM_JSON,
    FieldProblem,
    ProblemError,
    decoding_problem,
    encode_problem,
    internal_error,
    invalid_input,
    not_found,
    problem,
    problem_for,
)

__all__ = ["CommandAccepted", "CommandEndpoint", "QueryEndpoint", "Runtime"]

log = logging.getLogger("twofold.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON = b"application/json"
DEFAULT_TIMEOUT_MS = 5000
MAX_TIMEOUT_MS = 30_000
_WANTED = frozenset(
    {
        b"authorization",
        b"content-length",
        b"content-type",
        b"x-api-key",
        b"idempotency-key",
        b"if-match",
        b"if-none-match",
        b"twofold-min-position",
        b"x-correlation-id",
        b"x-request-id",
    }
)


class CommandAccepted(msgspec.Struct, frozen=True):
    """A command's answer: the id it concerns, the aggregate's version after it, and the
    log position to pass as ``min_position`` to read this write."""

    id: str
    version: int
    position: int


@dataclasses.dataclass(kw_only=True)
class Runtime:
    """What the endpoints run against; filled in on startup, emptied on shutdown."""

    app: App | None = None
    keys: ApiKeys = dataclasses.field(default_factory=lambda: ApiKeys({}))
    body_limit: int = 1024 * 1024

    def running(self) -> App:
        if self.app is None:
            raise ProblemError(
                problem(503, "not-ready", "Not ready", "the service is starting or stopping"),
                headers=[(b"retry-after", b"1")],
            )
        return self.app

    def authorize(self, headers: dict[bytes, bytes], scope: str) -> Principal | None:
        if not self.keys:
            return None
        return self.keys.check(headers.get(b"authorization"), headers.get(b"x-api-key"), scope)


_accepted = msgspec.json.Encoder()
_answers = msgspec.json.Encoder(decimal_format="string")


def _headers(scope: Scope) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _WANTED:
            found[name] = value
    return found


def _metadata(headers: dict[bytes, bytes], principal: Principal | None) -> Metadata | None:
    correlation = headers.get(b"x-correlation-id") or headers.get(b"x-request-id")
    if correlation is None and principal is None:
        return None
    return Metadata(
        correlation_id=correlation.decode("latin-1")[:200] if correlation else None,
        actor=principal.name if principal else None,
    )


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    content_type: bytes = JSON,
) -> None:
    headers.append((b"content-type", content_type))
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def answer_problem(send: Send, error: ProblemError, path: str) -> None:
    await _respond(
        send, error.problem.status, encode_problem(error, path), list(error.headers), PROBLEM_JSON
    )


class CommandEndpoint:
    """POST (or PUT...) body -> command -> ``{"id", "version", "position"}``."""

    def __init__(self, route: CommandRoute, runtime: Runtime) -> None:
        self.route = route
        self.runtime = runtime
        self.decoder: msgspec.json.Decoder[Any] | None = (
            msgspec.json.Decoder(route.body) if route.body is not None else None
        )
        self.status = route.status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        route = self.route
        headers = _headers(scope)
        if_match: int | None = None
        try:
            app = runtime.running()
            principal = runtime.authorize(headers, route.scope)
            content_type = headers.get(b"content-type")
            if content_type is not None:  # refused before reading the body
                accept.require_json(content_type)
            accept.check_path(scope["path_params"])
            if_match = accept.if_match(headers.get(b"if-match"))
            key = accept.idempotency_key(headers.get(b"idempotency-key"))
            length = headers.get(b"content-length")
            body = await accept.read_body(receive, runtime.body_limit, length)
            if content_type is None:
                accept.refuse_bodiless_data(body)
            decoded = accept.decode_body(self.decoder, body or b"{}")
            call = Call(route, scope["path_params"], idempotency_key=key, principal=principal)
            command = route.build(decoded, call)
            result = await app.dispatch(
                command,
                _metadata(headers, principal),
                idempotency_key=key,
                expected_version=if_match,
            )
            id = route.id(command, result) if route.id is not None else result.aggregate_id
            position = b"%d" % result.position
            out = [(b"twofold-position", position)]
            if route.location is not None:
                # The id is one path segment, whatever characters the client chose.
                location = route.location.replace("{id}", quote(id, safe=""))
                out.append((b"location", location.encode()))
            if result.replayed:
                out.append((b"idempotent-replayed", b"true"))
            payload = _accepted.encode(CommandAccepted(id, result.version, result.position))
        except Exception as error:
            await answer_problem(send, _problem(error, if_match is not None), scope["path"])
            return
        await _respond(send, self.status, payload, out)


class QueryEndpoint:
    """GET path and query parameters -> query -> the answer as JSON (404 when None)."""

    def __init__(self, route: QueryRoute, runtime: Runtime) -> None:
        self.route = route
        self.runtime = runtime
        self.etag = route.etag
        # Parameters that are all path parameters (ids, checked before) need no conversion.
        self.path_only = False
        self.path_count = len(route.path_params)
        # The query parameters a request may carry, and those that are whole numbers.
        self.allowed = frozenset({"min_position", "timeout_ms"})
        self.integers: frozenset[str] = frozenset()
        if isinstance(route.params, type) and issubclass(route.params, msgspec.Struct):
            fields = msgspec.structs.fields(route.params)
            self.path_only = {f.encode_name for f in fields} == set(route.path_params) and all(
                f.type is str or f.type == Id for f in fields
            )
            info = msgspec.inspect.type_info(route.params)
            assert isinstance(info, msgspec.inspect.StructType)
            names = {f.encode_name for f in info.fields} - set(route.path_params)
            self.allowed |= names
            self.integers = frozenset(
                f.encode_name
                for f in info.fields
                if f.encode_name in names and accept.is_whole_number(f.type)
            )
        self.cache_control = (
            route.cache_control.encode() if route.cache_control is not None else None
        )
        # The ETag field read out of stored JSON (ask_json) without decoding the rest.
        self.tag_decoder: msgspec.json.Decoder[Any] | None = None
        if route.etag is not None:
            tagged = msgspec.defstruct("Tagged", [(route.etag, Any, None)])
            self.tag_decoder = msgspec.json.Decoder(tagged)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        route = self.route
        headers = _headers(scope)
        try:
            app = runtime.running()
            principal = runtime.authorize(headers, route.scope)
            path_params: dict[str, str] = scope["path_params"]
            accept.check_path(path_params)
            query_string: bytes = scope["query_string"]
            values: dict[str, Any]
            wait_for: int | None = None
            timeout = DEFAULT_TIMEOUT_MS / 1000
            if query_string:
                try:
                    text = query_string.decode()
                    pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
                except UnicodeDecodeError:
                    raise invalid_input([FieldProblem("query", "must be UTF-8")]) from None
                values = dict(pairs)
                self._check_query(pairs, values)
                wait_for = _position(values.pop("min_position", None), "min_position")
                timeout = _timeout(values.pop("timeout_ms", None))
                values.update(path_params)  # the path names the resource, whatever the query says
            else:
                values = path_params
            header = headers.get(b"twofold-min-position")
            if header is not None:
                from_header = _position(header.decode("latin-1"), "Twofold-Min-Position")
                if wait_for is None:
                    wait_for = from_header
            params: Any = None
            if self.path_only and len(values) == self.path_count:
                params = route.params(**values)
            elif route.params is not None:
                try:
                    params = msgspec.convert(values, route.params, strict=False)
                except msgspec.ValidationError as error:
                    raise decoding_problem(error, "query") from None
            call = Call(route, path_params, principal=principal)
            query = route.build(params, call)
            payload: bytes | None = None
            if route.present is None and app.queries.has_json(type(query)):
                # The stored JSON goes out as it is (QueryBus.ask_json).
                payload = await app.ask_json(query, min_position=wait_for, timeout=timeout)
                answer: Any = payload
            else:
                answer = await app.ask(query, min_position=wait_for, timeout=timeout)
            if answer is None:
                raise not_found(f"nothing is found at {scope['path']}")
            out: list[tuple[bytes, bytes]] = []
            if self.cache_control is not None:
                out.append((b"cache-control", self.cache_control))
            version: Any = None
            if self.etag is not None:
                if payload is not None:
                    assert self.tag_decoder is not None
                    version = getattr(self.tag_decoder.decode(payload), self.etag)
                elif isinstance(answer, dict):
                    version = answer.get(self.etag)
                else:
                    version = getattr(answer, self.etag, None)
            if payload is None:
                if route.present is not None:
                    answer = route.present(answer)
                payload = _answers.encode(answer)
            if isinstance(version, int) and not isinstance(version, bool):
                tag = _etag(version, payload)
                out.append((b"etag", tag))
                if _matches(headers.get(b"if-none-match"), tag):
                    await send({"type": "http.response.start", "status": 304, "headers": out})
                    await send({"type": "http.response.body", "body": b""})
                    return
        except Exception as error:
            await answer_problem(send, _problem(error, False), scope["path"])
            return
        await _respond(send, 200, payload, out)

    def _check_query(self, pairs: list[tuple[str, str]], values: dict[str, str]) -> None:
        """Each parameter declared, given once, storable, and whole numbers as digits."""
        problems: dict[str, str] = {}
        if len(pairs) != len(values):
            seen: set[str] = set()
            for name, _ in pairs:
                if name in seen:
                    problems.setdefault(name, "is given more than once; give it once")
                seen.add(name)
        for name, value in values.items():
            if name not in self.allowed:
                known = ", ".join(sorted(self.allowed))
                problems[name] = f"is not a parameter of this route; it takes {known}"
            elif value == "null":
                # Loose conversion would read the text "null" as a missing value (None) for
                # an optional parameter: refuse it instead of quietly dropping the filter.
                problems[name] = "null is not a value; leave the parameter out"
            elif name in self.integers:
                problems.update(_named(name, accept.whole_number_problem(value)))
        problems.update(unstorable_text(values))
        if problems:
            raise invalid_input([FieldProblem(name, message) for name, message in problems.items()])


def _named(name: str, problem: str | None) -> dict[str, str]:
    return {} if problem is None else {name: problem}


def _position(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_POSITION:
        return int(raw)
    raise invalid_input([FieldProblem(name, "must be a whole number 0 or more")])


def _timeout(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_TIMEOUT_MS / 1000
    if raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) <= MAX_TIMEOUT_MS:
        return int(raw) / 1000
    raise invalid_input(
        [FieldProblem("timeout_ms", f"must be a whole number from 0 to {MAX_TIMEOUT_MS}")]
    )


def _etag(version: int, payload: bytes) -> bytes:
    """``"<version>.<digest>"``: the aggregate's version (what If-Match compares), and a
    digest of the answer itself. A view also changes through other streams (an order shows
    its customer's name, which a rename changes) and through a rebuild with new projection
    code, at the same version: the digest changes with every byte of the answer."""
    return b'"%d.%s"' % (version, hashlib.blake2b(payload, digest_size=8).hexdigest().encode())


def _matches(if_none_match: bytes | None, tag: bytes) -> bool:
    if if_none_match is None:
        return False
    for candidate in if_none_match.split(b","):
        candidate = candidate.strip()
        if candidate == b"*" or candidate.removeprefix(b"W/") == tag:
            return True
    return False


def _problem(error: Exception, if_match: bool) -> ProblemError:
    found = problem_for(error, if_match=if_match)
    if found is None:
        log.exception("unexpected error while answering", exc_info=error)
        return internal_error()
    return found
