"""``HttpApi``: declare how HTTP maps onto a service's commands and queries.

A route is a small function from the decoded request to a message; everything else
(auth, body limits, problem details, Idempotency-Key, If-Match, min_position, ETag,
OpenAPI) is the same for every route and done by twofold::

    api = HttpApi(BANK, title="Bank")

    class OpenAccountBody(msgspec.Struct):
        owner: str
        account_id: str | None = None

    @api.command("/accounts", body=OpenAccountBody, status=201, location="/accounts/{id}")
    def open_account(body: OpenAccountBody, call: Call) -> OpenAccount:
        \"\"\"Open an account.\"\"\"
        return OpenAccount(account_id=body.account_id or call.new_id(), owner=body.owner)

    class AccountPath(msgspec.Struct):
        account_id: str

    @api.query("/accounts/{account_id}", params=AccountPath, response=BalanceOut)
    def get_balance(params: AccountPath, call: Call) -> GetBalance:
        return GetBalance(account_id=params.account_id)

    app = api.asgi()   # an ASGI app: `twofold serve mymodule:app`, or any ASGI server

A command answers ``{"id", "version", "position"}``; a query answers what its handler
returns (``None`` becomes 404), encoded by msgspec. ``body``, ``params`` and ``response``
are msgspec types: they decode the request strictly (422 naming the field) and they are
the OpenAPI schemas.

Path parameters are ids: 1 to 128 letters, digits or ``-_.:@``, starting with a letter or
digit (``Id``, twofold's id rule). Anything else there is refused with 422 naming the
parameter, so an id a client may send in a body as ``Id`` is always readable at its URL.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec

from twofold.application.app import App, Service
from twofold.application.commands import CommandResult
from twofold.domain.messages import ID_PATTERN, MAX_ID_LENGTH
from twofold.errors import ConfigurationError
from twofold.http.auth import Principal
from twofold.records import uuid7

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from twofold.settings import Settings

__all__ = ["Call", "CommandRoute", "HttpApi", "Id", "QueryRoute"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_BODY_LIMIT = 1024 * 1024
Id = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="1 to 128 letters, digits or -_.:@, starting with a letter or digit",
        examples=["u-1"],
    ),
]
"""An id as a body field or parameter: the alphabet every path parameter has, so that a
resource created under it is readable at its URL."""
_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")
# Ids derived from an Idempotency-Key live in their own UUID namespace.
_ID_NAMESPACE = uuid.UUID("6d1c1f0e-7c2a-4f55-9a57-2f0d5d1e4b10")


class Call:
    """What a route function may know about the request besides its body or parameters."""

    __slots__ = ("_ids", "idempotency_key", "path", "principal", "route")

    def __init__(
        self,
        route: CommandRoute | QueryRoute,
        path: Mapping[str, str],
        *,
        idempotency_key: str | None = None,
        principal: Principal | None = None,
    ) -> None:
        self.route = route
        self.path = path
        """The path parameters, as text."""
        self.idempotency_key = idempotency_key
        self.principal = principal
        self._ids = 0

    def new_id(self) -> str:
        """A fresh id for an aggregate the command creates.

        With an Idempotency-Key the id is derived from the key (and the route and the
        caller), so a repeated request builds the very same command and gets the first
        answer back, instead of creating a second aggregate under a new id; another caller
        sending the same key gets an id of its own.
        """
        self._ids += 1
        if self.idempotency_key is None:
            return str(uuid7())
        caller = "" if self.principal is None else self.principal.name
        name = f"{self.route.method} {self.route.path}\n{self.idempotency_key}\n{self._ids}"
        if caller:
            name = f"{caller}\n{name}"
        return str(uuid.uuid5(_ID_NAMESPACE, name))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Route:
    method: str
    path: str
    build: Callable[[Any, Call], Any]
    scope: str
    operation_id: str
    summary: str
    description: str
    tags: tuple[str, ...]

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAM.findall(self.path))


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandRoute(_Route):
    """``method path`` turns a request body into a command."""

    body: Any
    status: int
    location: str | None
    id: Callable[[Any, CommandResult], str] | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueryRoute(_Route):
    """``GET path`` turns path and query parameters into a query."""

    params: Any
    response: Any
    etag: str | None
    cache_control: str | None
    present: Callable[[Any], Any] | None


class HttpApi:
    """The HTTP face of a ``Service``: its routes, and the ASGI app that serves them."""

    def __init__(
        self,
        service: Service,
        *,
        title: str | None = None,
        version: str = "0.1.0",
        description: str = "",
        body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        if body_limit < 1:
            raise ConfigurationError("body_limit must be at least 1 byte")
        self.service = service
        self.title = title or service.name
        self.version = version
        self.description = description
        self.body_limit = body_limit
        self.commands: list[CommandRoute] = []
        self.queries: list[QueryRoute] = []

    def command(
        self,
        path: str,
        *,
        body: Any = None,
        method: str = "POST",
        status: int = 200,
        location: str | None = None,
        id: Callable[[Any, CommandResult], str] | None = None,
        tags: Sequence[str] = (),
        scope: str = "commands",
    ) -> Callable[[F], F]:
        """Declare a command route; the decorated ``fn(body, call) -> Command`` builds it.

        ``body``: the msgspec type of the JSON body (None: no fields; ``{}`` or nothing).
        ``status``: 201 for routes that create; ``location``: the created resource's URL,
        with ``{id}`` for the id answered. ``id(command, result)``: the id to answer when
        it is not the aggregate's (default ``result.aggregate_id``).
        """
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            raise ConfigurationError(
                f"a command route uses POST, PUT, PATCH or DELETE, not {method}"
            )
        if location is not None and "{id}" not in location:
            raise ConfigurationError(f"location {location!r} must contain {{id}}")

        def declare(fn: F) -> F:
            self._check_new(method, path)
            self.commands.append(
                CommandRoute(
                    method=method,
                    path=path,
                    build=fn,
                    scope=scope,
                    **_describe(fn, tags),
                    body=body,
                    status=status,
                    location=location,
                    id=id,
                )
            )
            return fn

        return declare

    def query(
        self,
        path: str,
        *,
        response: Any,
        params: Any = None,
        etag: str | None = None,
        cache_control: str | None = None,
        present: Callable[[Any], Any] | None = None,
        tags: Sequence[str] = (),
        scope: str = "queries",
    ) -> Callable[[F], F]:
        """Declare a query route (GET); the decorated ``fn(params, call) -> Query`` builds it.

        ``params``: a msgspec Struct whose fields are the path parameters and the query
        parameters (text converted to the field types; 422 naming the field otherwise).
        ``response``: the answer's type, for the schema. ``etag``: the answer's field
        holding its version; the answer then carries ``ETag: "<version>.<digest>"`` (a
        digest of the answer's bytes: it changes whenever the answer does) and a matching
        ``If-None-Match`` gets 304. ``present(answer)``: reshape the answer before encoding.
        ``min_position`` and ``timeout_ms`` are added to every query route.
        """

        def declare(fn: F) -> F:
            self._check_new("GET", path)
            if params is not None:
                fields = set(getattr(params, "__struct_fields__", ()))
                missing = [p for p in _PATH_PARAM.findall(path) if p not in fields]
                if missing or not fields:
                    raise ConfigurationError(
                        f"params of {path} must be a msgspec Struct with a field for each path "
                        f"parameter; missing: {', '.join(missing) or 'all'}"
                    )
            self.queries.append(
                QueryRoute(
                    method="GET",
                    path=path,
                    build=fn,
                    scope=scope,
                    **_describe(fn, tags),
                    params=params,
                    response=response,
                    etag=etag,
                    cache_control=cache_control,
                    present=present,
                )
            )
            return fn

        return declare

    def _check_new(self, method: str, path: str) -> None:
        if not path.startswith("/"):
            raise ConfigurationError(f"route path {path!r} must start with '/'")
        for route in (*self.commands, *self.queries):
            if route.method == method and route.path == path:
                raise ConfigurationError(f"{method} {path} is declared twice")

    def asgi(self, settings: Settings | None = None) -> Starlette:
        """The ASGI app. It builds the service's App on startup with ``bootstrap`` (from
        ``settings``, or from the TWOFOLD_* environment then) and closes it on shutdown."""
        from twofold.bootstrap import bootstrap
        from twofold.http.server import build_asgi

        async def build() -> App:
            return await bootstrap(self.service, settings)

        return build_asgi(self, build)


def _describe(fn: Callable[..., Any], tags: Sequence[str]) -> dict[str, Any]:
    doc = inspect.getdoc(fn) or ""
    summary, _, description = doc.partition("\n")
    return {
        "operation_id": fn.__name__,
        "summary": summary.strip() or fn.__name__.replace("_", " "),
        "description": description.strip(),
        "tags": tuple(tags),
    }
