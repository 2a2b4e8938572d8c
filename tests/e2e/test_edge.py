"""What the edge accepts (DESIGN 7a), beside what it refuses (test_hostile_input.py): JSON
bodies only, ids readable where they were created, HEAD, numbers at the limits the views
hold, and an OpenAPI document that declares every limit the server enforces."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.shop_client import created, head, ok, problem, shop, user
from twofold.examples.shop.http import api
from twofold.http.openapi import openapi_document


@pytest.mark.parametrize(
    "media", ["application/json; charset=utf-8", "application/vnd.shop+json", "Application/JSON"]
)
def test_json_bodies_are_accepted_under_any_json_media_type(
    client: httpx.Client, media: str
) -> None:
    raw = b'{"email": "ann@example.com", "name": "Ann"}'
    created(client.post("/api/users", content=raw, headers={"content-type": media}))


def test_a_text_plain_post_as_a_browser_sends_it_across_sites_records_nothing(
    client: httpx.Client,
) -> None:
    raw = b'{"email": "ann@example.com", "name": "Ann"}'
    body = problem(
        client.post("/api/users", content=raw, headers={"content-type": "text/plain"}), 415
    )
    assert body["errors"][0]["field"] == "Content-Type"
    assert head(client) == 0


def test_a_streamed_body_over_the_limit_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        yield b'{"email": "ann@example.com", "name": "'
        for _ in range(40):
            yield b"x" * 32 * 1024
        yield b'"}'

    response = client.post(
        "/api/users", content=chunks(), headers={"content-type": "application/json"}
    )
    assert problem(response, 413)["errors"][0]["field"] == "body"
    assert head(client) == 0


# -- ids: every id accepted is readable at its Location ------------------------------------

IDS = ["A.b_c:d@e-1", "0", "x" * 128, "a..", "user@example.com", "urn:isbn:0451450523"]


@pytest.mark.parametrize("chosen", IDS)
def test_every_accepted_id_is_readable_at_its_location(client: httpx.Client, chosen: str) -> None:
    user(client)
    creations: list[tuple[str, dict[str, Any]]] = [
        ("/api/users", {"user_id": chosen, "email": "z@example.com", "name": "Z"}),
        ("/api/products", {"product_id": chosen, "name": "Pen", "price": "1.00"}),
        ("/api/orders", {"order_id": chosen, "customer_id": "u1", "items": []}),
        ("/api/posts", {"post_id": chosen, "author_id": "u1", "title": "t", "body": "b"}),
    ]
    creations[2][1]["items"] = [{"product_id": chosen, "quantity": 1, "price": "1.00"}]
    for path, body in creations:
        response = client.post(path, json=body)
        answer = created(response)
        assert answer["id"] == chosen
        view = ok(
            client.get(response.headers["location"], params={"min_position": answer["position"]})
        )
        assert chosen in view.values()


# -- HEAD ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/users/u1", "/api/orders/o1", "/api/orders?customer_id=u1", "/api/products/p1"]
)
def test_head_answers_as_get_without_the_body(client: httpx.Client, path: str) -> None:
    position = shop(client)
    params = {"min_position": position}
    got = client.get(path, params=params)
    assert ok(got)
    headed = client.head(path, params=params)
    assert headed.status_code == 200 and headed.content == b""
    for name in ("content-type", "content-length", "etag", "cache-control"):
        assert headed.headers.get(name) == got.headers.get(name), name


def test_head_of_a_missing_resource_is_404_and_allow_names_head(client: httpx.Client) -> None:
    missing = client.head("/api/users/ghost")
    assert missing.status_code == 404 and missing.content == b""
    refused = problem(client.put("/api/users/u1"), 405)
    assert refused["status"] == 405
    assert client.put("/api/users/u1").headers["allow"] == "GET, HEAD"


# -- numbers: JSON Schema's integers, and the largest order the views hold ----------------


def test_a_whole_number_written_with_a_zero_fraction_is_that_number(client: httpx.Client) -> None:
    shop(client)
    raw = b'{"customer_id": "u1", "items": [{"product_id": "p1", "quantity": 3.0, "price": "1"}]}'
    response = client.post("/api/orders", content=raw, headers={"content-type": "application/json"})
    order = created(response)
    view = ok(client.get(f"/api/orders/{order['id']}", params={"min_position": order["position"]}))
    assert view["items"][0]["quantity"] == 3


def test_orders_at_every_limit_are_projected_exactly(client: httpx.Client) -> None:
    shop(client)
    created(client.post("/api/products", json={"product_id": "gold", "name": "Gold", "price": "0"}))
    item = {"product_id": "gold", "quantity": 1_000_000, "price": "999999999999.99"}
    for _ in range(3):
        order = created(
            client.post("/api/orders", json={"customer_id": "u1", "items": [item] * 100})
        )
    view = ok(client.get(f"/api/orders/{order['id']}", params={"min_position": order["position"]}))
    largest = Decimal("999999999999.99") * 1_000_000 * 100
    assert Decimal(view["total_amount"]) == largest
    statistics = ok(client.get("/api/customers/u1/statistics"))
    assert Decimal(statistics["total_amount"]) == 3 * largest + Decimal("25.00")
    assert ok(client.get("/health"))["status"] == "UP"


# -- what the HTTP parser refuses ----------------------------------------------------------


def test_a_request_the_http_parser_refuses_gets_problem_details(shop_url: str) -> None:
    address = urlsplit(shop_url)
    with socket.create_connection((address.hostname, address.port)) as connection:
        connection.sendall(b"GET /api/users/u1 HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 400 Bad Request"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in headers.lower()
    assert httpx.Response(400, content=body).json()["errors"][0]["field"] == "request"


# -- the OpenAPI document declares each limit ----------------------------------------------


def test_the_openapi_document_declares_every_limit_the_server_enforces() -> None:
    document = openapi_document(api, auth=False)
    schemas = document["components"]["schemas"]
    user_body = schemas["CreateUserBody"]["properties"]
    assert user_body["name"]["minLength"] == 1 and user_body["name"]["maxLength"] == 200
    assert "pattern" in user_body["name"] and "pattern" in user_body["email"]
    assert user_body["email"]["maxLength"] == 254
    item = schemas["OrderItemBody"]["properties"]
    assert item["quantity"]["minimum"] == 1 and item["quantity"]["maximum"] == 1_000_000
    price = re.compile(item["price"]["pattern"])
    assert price.search("12.50") and not price.search("-1")
    order_body = schemas["CreateOrderBody"]["properties"]
    assert (order_body["items"]["minItems"], order_body["items"]["maxItems"]) == (1, 100)
    for name in ("ShipOrderBody", "CancelOrderBody", "CreatePostBody", "AddCommentBody"):
        for field, schema in schemas[name]["properties"].items():
            if field not in ("author_id", "comment_id", "post_id"):
                assert schema["minLength"] == 1 and "maxLength" in schema and "pattern" in schema
    ship = document["paths"]["/api/orders/{order_id}/ship"]["post"]
    headers = {p["name"]: p["schema"] for p in ship["parameters"]}
    assert headers["If-Match"]["pattern"] and headers["Idempotency-Key"]["pattern"]
    assert headers["order_id"]["maxLength"] == 128 and headers["order_id"]["pattern"]
    assert {"413", "415", "422"} <= ship["responses"].keys()
    get = document["paths"]["/api/users/{user_id}"]["get"]
    position = next(p for p in get["parameters"] if p["name"] == "Twofold-Min-Position")
    assert "9223372036854775807" in position["schema"]["pattern"]
