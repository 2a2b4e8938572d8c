"""Hostile input for every route of the shop, shared by the SQLite and PostgreSQL suites.

Each case is a request the edge must refuse: never with a 5xx, always with problem details
naming the field at fault (and the limit, where one was passed), and with nothing stored
(the log's head does not move). ``check_generated`` adds cases drawn by hypothesis: any
path segment, any parameter, any value in any body field, any header value.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.shop_client import created, fields, head, shop

JSON = {"content-type": "application/json"}
ITEM = {"product_id": "p1", "quantity": 1, "price": "12.50"}


@dataclasses.dataclass(frozen=True)
class CommandRoute:
    """A command route of the shop: its path (``{}`` for the parameter, with its name and
    the id of a resource ``prepare`` made) and a valid body, which cases change."""

    template: str
    parameter: str | None
    existing: str | None
    body: dict[str, Any]

    @property
    def path(self) -> str:
        return self.template.format(self.existing)


COMMAND_ROUTES = [
    CommandRoute("/api/users", None, None, {"email": "ann@example.com", "name": "Ann"}),
    CommandRoute("/api/users/{}/email", "user_id", "u1", {"new_email": "ann@example.org"}),
    CommandRoute("/api/users/{}/name", "user_id", "u1", {"name": "Anne"}),
    CommandRoute("/api/users/{}/logins", "user_id", "u1", {}),
    CommandRoute("/api/products", None, None, {"name": "Ink", "price": "2.00"}),
    CommandRoute("/api/orders", None, None, {"customer_id": "u1", "items": [ITEM]}),
    CommandRoute(
        "/api/orders/{}/ship",
        "order_id",
        "o1",
        {"shipping_address": "1 Main St", "tracking_number": "T1"},
    ),
    CommandRoute("/api/orders/{}/cancel", "order_id", "o1", {"reason": "changed my mind"}),
    CommandRoute("/api/posts", None, None, {"author_id": "u1", "title": "Hi", "body": "Hello"}),
    CommandRoute("/api/posts/{}/comments", "post_id", "b1", {"author_id": "u1", "text": "Nice"}),
]
COMMANDS = {route.path: route.body for route in COMMAND_ROUTES}
QUERY_PATHS = {
    "/api/users/{}": "user_id",
    "/api/products/{}": "product_id",
    "/api/orders/{}": "order_id",
    "/api/customers/{}/statistics": "customer_id",
    "/api/posts/{}": "post_id",
}
QUERIES = ["/api/users?email_domain=example.com", "/api/orders", "/api/users/u1", "/api/orders/o1"]


@dataclasses.dataclass(frozen=True)
class Hostile:
    """A request the edge refuses with ``status``, naming ``field`` (and ``mentions``)."""

    name: str
    method: str
    path: str
    status: int
    field: str | None
    body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    mentions: str | None = None

    def send(self, client: httpx.Client) -> httpx.Response:
        content = self.content
        headers = dict(self.headers)
        if self.body is not None:
            content = json.dumps(self.body).encode()
            headers = {**JSON, **headers}
        return client.request(self.method, self.path, content=content, headers=headers)


def _post(name: str, path: str, body: Any, field: str, **extra: Any) -> Hostile:
    return Hostile(name, "POST", path, extra.pop("status", 422), field, body=body, **extra)


def _with(path: str, **changes: Any) -> dict[str, Any]:
    return {**COMMANDS[path], **changes}


def _cases() -> Iterator[Hostile]:
    # -- NUL and ids outside the alphabet wherever an id appears (path, body, query) -------
    for template, name in QUERY_PATHS.items():
        for segment in ("%00", "a%00", "a%20b", "%FF", "-a", "x" * 129, "%E2%80%A8"):
            path = template.format(segment)
            yield Hostile(f"GET {path}", "GET", path, 422, name)
        # A "/" splits the segment: no route matches, so no parameter can be named.
        path = template.format("..%2F..%2Fetc")
        yield Hostile(f"GET {path}", "GET", path, 404, None)
    for route in COMMAND_ROUTES:
        if route.parameter is None:
            continue
        for segment in ("%00", "a%20b", "%E2%80%A8"):
            path = route.template.format(segment)
            yield _post(f"POST {path}", path, route.body, route.parameter)
    for value in ("a\x00", "a/b", "../../etc/passwd", "a\x01b", "a b", "..", "", "é", "x" * 129):
        for path, field in (
            ("/api/users", "user_id"),
            ("/api/products", "product_id"),
            ("/api/orders", "order_id"),
            ("/api/orders", "customer_id"),
            ("/api/posts", "post_id"),
            ("/api/posts", "author_id"),
            ("/api/posts/b1/comments", "comment_id"),
            ("/api/posts/b1/comments", "author_id"),
        ):
            yield _post(
                f"{path} {field}={value[:12]!r}", path, _with(path, **{field: value}), field
            )
        item = {**ITEM, "product_id": value}
        body = _with("/api/orders", items=[item])
        yield _post(f"item product_id={value[:12]!r}", "/api/orders", body, "items[0].product_id")
    yield Hostile("customer_id query NUL", "GET", "/api/orders?customer_id=%00", 422, "customer_id")
    # -- NUL and lone surrogates in every text field ----------------------------------------
    texts = {
        "/api/users": ["email", "name"],
        "/api/users/u1/email": ["new_email"],
        "/api/users/u1/name": ["name"],
        "/api/products": ["name"],
        "/api/orders/o1/ship": ["shipping_address", "tracking_number"],
        "/api/orders/o1/cancel": ["reason"],
        "/api/posts": ["title", "body"],
        "/api/posts/b1/comments": ["text"],
    }
    for path, names in texts.items():
        for field in names:
            yield _post(f"{path} {field} NUL", path, _with(path, **{field: "x\x00y"}), field)
            raw = json.dumps(_with(path, **{field: "PLACE"})).replace("PLACE", "x\\udc00")
            yield Hostile(
                f"{path} {field} surrogate", "POST", path, 422, "body", None, raw.encode(), JSON
            )
    yield Hostile("domain NUL", "GET", "/api/users?email_domain=a%00b", 422, "email_domain")
    # -- bodies that are not UTF-8 JSON, too deep, too large, or not JSON at all ------------
    for path in COMMANDS:
        yield Hostile(
            f"{path} not UTF-8", "POST", path, 422, "body", content=b'{"name":"\xff"}', headers=JSON
        )
        deep = b"[" * 2000 + b"]" * 2000
        yield Hostile(f"{path} nested", "POST", path, 422, "body", content=deep, headers=JSON)
        nested = b'{"name": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        yield Hostile(
            f"{path} nested field", "POST", path, 422, "body", content=nested, headers=JSON
        )
        large = json.dumps(_with(path, padding="x" * (1024 * 1024))).encode()
        yield Hostile(f"{path} too large", "POST", path, 413, "body", content=large, headers=JSON)
        command_json = json.dumps(COMMANDS[path]).encode()
        for media in ("text/plain", "application/xml", "application/x-www-form-urlencoded"):
            headers = {"content-type": media}
            yield Hostile(
                f"{path} {media}",
                "POST",
                path,
                415,
                "Content-Type",
                content=command_json,
                headers=headers,
            )
        latin = {"content-type": "application/json; charset=latin-1"}
        yield Hostile(
            f"{path} latin-1",
            "POST",
            path,
            415,
            "Content-Type",
            content=command_json,
            headers=latin,
        )
        yield Hostile(f"{path} no type", "POST", path, 415, "Content-Type", content=command_json)
        yield Hostile(
            f"{path} key",
            "POST",
            path,
            422,
            "Idempotency-Key",
            body=COMMANDS[path],
            headers={"Idempotency-Key": "a b"},
        )
    # -- headers --------------------------------------------------------------------------
    for path in (route.path for route in COMMAND_ROUTES if route.parameter is not None):
        for tag in ('"' + "9" * 5000 + '"', "9" * 5000, '"-1"', '"1', "*", '"1", "2"', '"1e3"'):
            yield _post(
                f"{path} If-Match {tag[:8]}",
                path,
                COMMANDS[path],
                "If-Match",
                headers={"If-Match": tag},
            )
    for query in QUERIES:
        for value in ("9" * 5000, "9223372036854775808", "-1", "1e3", "0x1"):
            headers = {"Twofold-Min-Position": value}
            yield Hostile(
                f"{query} position header {value[:8]!r}",
                "GET",
                query,
                422,
                "Twofold-Min-Position",
                headers=headers,
            )
    # -- query parameters: forms, unknown names, repeats, dates ----------------------------
    for query in QUERIES:
        joiner = "&" if "?" in query else "?"
        yield Hostile(f"{query} unknown", "GET", f"{query}{joiner}colour=red", 422, "colour")
        for value in ("1e3", "1.0", "-1", "9" * 5000, "%00"):
            yield Hostile(
                f"{query} min_position {value[:8]}",
                "GET",
                f"{query}{joiner}min_position={value}",
                422,
                "min_position",
            )
        yield Hostile(
            f"{query} timeout", "GET", f"{query}{joiner}timeout_ms=1e3", 422, "timeout_ms"
        )
    for name in ("page", "size"):
        for value in ("1e3", "1.0", "0x10", "+1", " 1", "", "9" * 5000):
            yield Hostile(
                f"orders {name}={value[:8]!r}", "GET", f"/api/orders?{name}={value}", 422, name
            )
    yield Hostile("orders page twice", "GET", "/api/orders?page=1&page=2", 422, "page")
    for name, value in (
        ("from", "9999-12-31T23:59:59-23:59"),
        ("to", "0001-01-01T00:00:00%2B23:59"),
        ("from", "2024-02-30T00:00:00Z"),
        ("to", "2024-01-01T00:00:00"),
        ("from", "1700000000"),
        ("to", "2024-01-01T00:00:00Z%0A"),
    ):
        yield Hostile(f"orders {name}={value}", "GET", f"/api/orders?{name}={value}", 422, name)
    for domain in ("", "%20", "@", "%40%20"):
        yield Hostile(
            f"domain {domain!r}", "GET", f"/api/users?email_domain={domain}", 422, "email_domain"
        )
    # -- what the views cannot hold: numbers, prices, text lengths, list sizes ---------------
    for quantity, mentions in (
        (10**40, "1000000"),
        (1_000_001, "1000000"),
        (0, "1"),
        (1.5, None),
        ("1", None),
    ):
        item = {**ITEM, "quantity": quantity}
        yield _post(
            f"quantity {quantity!r:.12}",
            "/api/orders",
            _with("/api/orders", items=[item]),
            "items[0].quantity",
            mentions=mentions,
        )
    for price in (
        "1.00\n",
        " 1.00",
        "-1",
        "1e3",
        "1.001",
        "1" * 13,
        "NaN",
        "Infinity",
        "0x1",
        "1,00",
        "٣",
    ):
        item = {**ITEM, "price": price}
        yield _post(
            f"item price {price!r}",
            "/api/orders",
            _with("/api/orders", items=[item]),
            "items[0].price",
            mentions="12 digits",
        )
        yield _post(
            f"product price {price!r}",
            "/api/products",
            _with("/api/products", price=price),
            "price",
            mentions="12 digits",
        )
    yield _post(
        "101 items",
        "/api/orders",
        _with("/api/orders", items=[ITEM] * 101),
        "items",
        mentions="100",
    )
    for path, field, limit in (
        ("/api/users", "name", 200),
        ("/api/users", "email", 254),
        ("/api/users/u1/name", "name", 200),
        ("/api/products", "name", 200),
        ("/api/orders/o1/ship", "shipping_address", 500),
        ("/api/orders/o1/ship", "tracking_number", 100),
        ("/api/orders/o1/cancel", "reason", 1000),
        ("/api/posts", "title", 200),
        ("/api/posts", "body", 100_000),
        ("/api/posts/b1/comments", "text", 10_000),
    ):
        value = "x" * (limit + 1) if field != "email" else "a@" + "b" * limit + ".example"
        yield _post(
            f"{path} {field} too long",
            path,
            _with(path, **{field: value}),
            field,
            mentions=str(limit),
        )
        yield _post(f"{path} {field} blank", path, _with(path, **{field: " \u3000\n"}), field)


CASES = list(_cases())


def prepare(client: httpx.Client) -> None:
    """The shop the cases refer to: user u1, product p1, order o1 and post b1."""
    shop(client)
    created(
        client.post(
            "/api/posts", json={"post_id": "b1", "author_id": "u1", "title": "t", "body": "b"}
        )
    )


def refused(response: httpx.Response, *, status: int | None = None) -> dict[str, Any]:
    """The problem details of a refusal (any 4xx when ``status`` is None)."""
    assert response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    if response.status_code in (413, 415, 422):
        assert body["errors"], body
    return body


def check(client: httpx.Client, case: Hostile) -> None:
    before = head(client)
    body = refused(case.send(client), status=case.status)
    if case.field is not None:
        assert case.field in fields(body), body
    if case.mentions is not None:
        messages = [e["message"] for e in body["errors"] if e["field"] == case.field]
        assert any(case.mentions in m for m in messages), body
    assert head(client) == before, f"{case.name}: refused, yet the log moved"


# -- generated cases ----------------------------------------------------------------------

_segments = st.text(max_size=140) | st.sampled_from(["u1", "o1", "b1", "p1", "..", ".", "a/b", ""])
_scalars = (
    st.text(max_size=300)
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: n * 10**30)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Twofold-Min-Position only in forms that do not wait: a read that waits for a position not
# reached is answered 503 by contract, after the timeout, which is not what this is about.
_headers = st.dictionaries(
    st.sampled_from(["If-Match", "Idempotency-Key", "If-None-Match", "X-Correlation-Id"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40).map(
        lambda text: text.strip().encode("latin-1")  # any byte an HTTP header can carry
    ),
    max_size=3,
)


@st.composite
def requests(draw: Callable[[Any], Any]) -> tuple[str, str, bytes | None, dict[str, Any]]:
    """Any route, with any path segment, and a body or query changed anywhere."""
    headers: dict[str, Any] = draw(_headers)
    if draw(st.booleans()):
        route = draw(st.sampled_from(COMMAND_ROUTES))
        path = route.path
        if route.parameter is not None and draw(st.booleans()):
            path = route.template.format(quote(draw(_segments), safe=""))
        body = dict(route.body)
        for name in draw(st.lists(st.sampled_from([*body, "items", "extra"]), max_size=3)):
            body[name] = draw(_values)
        return "POST", path, json.dumps(body).encode(), {**JSON, **headers}
    headers.pop("If-Match", None)
    headers.pop("Idempotency-Key", None)
    template = draw(st.sampled_from([*QUERY_PATHS, "/api/users", "/api/orders"]))
    path = template.format(quote(draw(_segments), safe="")) if "{}" in template else template
    names = ["email_domain", "page", "size", "customer_id", "status", "from", "to", "x"]
    params = draw(st.lists(st.tuples(st.sampled_from(names), st.text(max_size=40)), max_size=4))
    query = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in params)
    return "GET", f"{path}?{query}" if query else path, None, headers


def check_generated(client: httpx.Client, *, examples: int) -> None:
    """Drawn requests never get a 5xx; a refusal is problem details and stores nothing."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests())
    def never_a_server_error(request: tuple[str, str, bytes | None, dict[str, Any]]) -> None:
        method, path, content, headers = request
        before = head(client)
        response = client.request(method, path, content=content, headers=headers)
        if response.status_code >= 400:
            refused(response)
            assert head(client) == before, f"{method} {path}: refused, yet the log moved"

    never_a_server_error()
