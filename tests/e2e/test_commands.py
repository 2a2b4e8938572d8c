"""Every command route over HTTP: its answer, and every way it refuses (recording nothing)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.shop_client import created, fields, head, ok, order, problem, product, shop, user


def test_create_user_answers_201_with_location_and_position(client: httpx.Client) -> None:
    response = client.post("/api/users", json={"email": "ann@example.com", "name": "Ann"})
    body = created(response)
    assert set(body) == {"id", "version", "position"}
    assert body["version"] == 1 and body["position"] == 1
    assert response.headers["location"] == f"/api/users/{body['id']}"
    assert response.headers["twofold-position"] == "1"


def test_create_user_keeps_the_id_the_client_chose(client: httpx.Client) -> None:
    assert user(client, "ann")["id"] == "ann"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/users/u1/email", {"new_email": "ann@example.org"}),
        ("/api/users/u1/name", {"name": "Anne"}),
        ("/api/users/u1/logins", {}),
    ],
)
def test_user_changes_answer_200_with_the_new_version(
    client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    user(client)
    response = client.post(path, json=body)
    answer = ok(response)
    assert answer == {"id": "u1", "version": 2, "position": 2}
    assert response.headers["twofold-position"] == "2"


def test_login_accepts_an_empty_body(client: httpx.Client) -> None:
    user(client)
    assert ok(client.post("/api/users/u1/logins"))["version"] == 2


def test_add_product_answers_201(client: httpx.Client) -> None:
    response = client.post("/api/products", json={"name": "Pen", "price": "12.50"})
    body = created(response)
    assert response.headers["location"] == f"/api/products/{body['id']}"


def test_create_order_answers_201_with_location(client: httpx.Client) -> None:
    user(client)
    product(client)
    response = client.post(
        "/api/orders",
        json={"customer_id": "u1", "items": [{"product_id": "p1", "quantity": 1, "price": "1"}]},
    )
    body = created(response)
    assert response.headers["location"] == f"/api/orders/{body['id']}"
    assert body["version"] == 1 and body["position"] == 3


def test_ship_and_cancel_answer_200(client: httpx.Client) -> None:
    shop(client)
    order(client, order_id="o2")
    shipped = client.post(
        "/api/orders/o1/ship", json={"shipping_address": "1 Main St", "tracking_number": "T1"}
    )
    assert ok(shipped)["version"] == 2
    assert (
        ok(client.post("/api/orders/o2/cancel", json={"reason": "changed my mind"}))["version"] == 2
    )


def test_posts_and_comments_answer_201(client: httpx.Client) -> None:
    user(client)
    post = client.post("/api/posts", json={"author_id": "u1", "title": "Hi", "body": "Hello"})
    post_id = created(post)["id"]
    assert post.headers["location"] == f"/api/posts/{post_id}"
    comment = created(
        client.post(f"/api/posts/{post_id}/comments", json={"author_id": "u1", "text": "Nice"})
    )
    assert comment["id"] != post_id and comment["version"] == 2
    chosen = client.post(
        f"/api/posts/{post_id}/comments", json={"author_id": "u1", "text": "x", "comment_id": "c9"}
    )
    assert created(chosen)["id"] == "c9"


# -- 422: invalid input -------------------------------------------------------------------


ITEM = {"product_id": "p1", "quantity": 1, "price": "12.50"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/users", {"name": "Ann"}, "email"),
        ("/api/users", {"email": "ann@example.com", "name": 7}, "name"),
        ("/api/users", {"email": "not-an-address", "name": "Ann"}, "email"),
        ("/api/users", {"email": "ann@example.com", "name": "  "}, "name"),
        ("/api/users/u1/email", {"new_email": "nope"}, "new_email"),
        ("/api/products", {"name": "Pen", "price": "-1.00"}, "price"),
        ("/api/products", {"name": "Pen", "price": "twelve"}, "price"),
        ("/api/products", {"name": "Pen", "price": 12.5}, "price"),
        ("/api/orders", {"customer_id": "u1", "items": []}, "items"),
        ("/api/orders", {"customer_id": "u1"}, "items"),
        (
            "/api/orders",
            {"customer_id": "u1", "items": [{**ITEM, "quantity": 0}]},
            "items[0].quantity",
        ),
        (
            "/api/orders",
            {"customer_id": "u1", "items": [{**ITEM, "quantity": -2}]},
            "items[0].quantity",
        ),
        (
            "/api/orders",
            {"customer_id": "u1", "items": [{**ITEM, "quantity": "1"}]},
            "items[0].quantity",
        ),
        (
            "/api/orders",
            {"customer_id": "u1", "items": [{**ITEM, "price": "-5"}]},
            "items[0].price",
        ),
        ("/api/orders", {"customer_id": "nobody", "items": [ITEM]}, "customer_id"),
        (
            "/api/orders",
            {"customer_id": "u1", "items": [{**ITEM, "product_id": "p404"}]},
            "items[0].product_id",
        ),
        ("/api/orders/o1/ship", {"shipping_address": "1 Main St"}, "tracking_number"),
        ("/api/orders/o1/cancel", {"reason": ""}, "reason"),
        ("/api/posts", {"author_id": "nobody", "title": "t", "body": "b"}, "author_id"),
        ("/api/posts", {"author_id": "u1", "title": "t"}, "body"),
    ],
)
def test_invalid_input_is_422_naming_the_field_and_records_nothing(
    client: httpx.Client, path: str, body: dict[str, Any], field: str
) -> None:
    shop(client)
    before = head(client)
    answer = problem(client.post(path, json=body), 422)
    assert field in fields(answer), answer
    assert answer["type"].endswith("invalid-input")
    assert head(client) == before


def test_comment_by_an_unknown_author_is_422(client: httpx.Client) -> None:
    user(client)
    post_id = created(
        client.post("/api/posts", json={"author_id": "u1", "title": "t", "body": "b"})
    )["id"]
    body = problem(
        client.post(f"/api/posts/{post_id}/comments", json={"author_id": "x", "text": "hi"}), 422
    )
    assert fields(body) == {"author_id"}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_422(client: httpx.Client, raw: bytes) -> None:
    body = problem(
        client.post("/api/users", content=raw, headers={"content-type": "application/json"}), 422
    )
    assert head(client) == 0
    assert body["errors"]


def test_a_body_over_the_size_limit_is_413(client: httpx.Client) -> None:
    huge = {"email": "ann@example.com", "name": "x" * (2 * 1024 * 1024)}
    body = problem(client.post("/api/users", json=huge), 413)
    assert fields(body) == {"body"}
    assert head(client) == 0


# -- 404 and 409 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/users/ghost/email", {"new_email": "g@example.com"}),
        ("/api/users/ghost/name", {"name": "Ghost"}),
        ("/api/users/ghost/logins", {}),
        ("/api/orders/ghost/ship", {"shipping_address": "a", "tracking_number": "t"}),
        ("/api/orders/ghost/cancel", {"reason": "r"}),
        ("/api/posts/ghost/comments", {"author_id": "u1", "text": "hi"}),
    ],
)
def test_a_command_to_a_missing_aggregate_is_404(
    client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    user(client)
    problem(client.post(path, json=body), 404)
    assert head(client) == 1


SHIP = {"shipping_address": "1 Main St", "tracking_number": "T1"}


def test_shipping_a_cancelled_order_is_409(client: httpx.Client) -> None:
    shop(client)
    ok(client.post("/api/orders/o1/cancel", json={"reason": "r"}))
    before = head(client)
    body = problem(client.post("/api/orders/o1/ship", json=SHIP), 409)
    assert "cancelled" in body["detail"]
    assert head(client) == before


def test_cancelling_a_shipped_order_is_409(client: httpx.Client) -> None:
    shop(client)
    ok(client.post("/api/orders/o1/ship", json=SHIP))
    problem(client.post("/api/orders/o1/cancel", json={"reason": "r"}), 409)


def test_shipping_twice_is_409(client: httpx.Client) -> None:
    shop(client)
    ok(client.post("/api/orders/o1/ship", json=SHIP))
    before = head(client)
    problem(client.post("/api/orders/o1/ship", json=SHIP), 409)
    assert head(client) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/users", {"user_id": "u1", "email": "x@example.com", "name": "X"}),
        ("/api/products", {"product_id": "p1", "name": "Ink", "price": "1"}),
        ("/api/orders", {"order_id": "o1", "customer_id": "u1", "items": [ITEM]}),
    ],
)
def test_creating_an_id_that_exists_is_409(
    client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    shop(client)
    before = head(client)
    answer = problem(client.post(path, json=body), 409)
    assert answer["type"].endswith("already-exists")
    assert head(client) == before


def test_a_comment_id_that_exists_is_409(client: httpx.Client) -> None:
    user(client)
    created(
        client.post(
            "/api/posts", json={"post_id": "b1", "author_id": "u1", "title": "t", "body": "b"}
        )
    )
    comment = {"author_id": "u1", "text": "hi", "comment_id": "c1"}
    created(client.post("/api/posts/b1/comments", json=comment))
    problem(client.post("/api/posts/b1/comments", json=comment), 409)


def test_unknown_routes_answer_problem_details(client: httpx.Client) -> None:
    problem(client.get("/api/nothing"), 404)
    problem(client.delete("/api/users"), 405)
