"""Every query route over HTTP: answers, read-your-writes, ETags, and malformed parameters."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import running, shop_settings
from tests.e2e.shop_client import created, fields, ok, order, problem, product, shop, user
from twofold.examples.shop.http import api as shop_api

SHIP = {"shipping_address": "1 Main St", "tracking_number": "T1"}


def test_get_user_reads_its_own_write(client: httpx.Client) -> None:
    position = user(client, "u1", "Ann")["position"]
    login = ok(client.post("/api/users/u1/logins"))
    body = ok(client.get("/api/users/u1", params={"min_position": login["position"]}))
    assert body["user_id"] == "u1" and body["email"] == "u1@example.com"
    assert body["name"] == "Ann" and body["version"] == 2
    assert body["activity"]["login_count"] == 1 and body["activity"]["last_login"]
    assert body["activity"]["orders_count"] == 0
    assert body["created_at"].endswith("Z") and body["updated_at"] >= body["created_at"]
    assert position == 1


def test_min_position_may_come_as_a_header(client: httpx.Client) -> None:
    position = user(client)["position"]
    response = client.get("/api/users/u1", headers={"Twofold-Min-Position": str(position)})
    assert ok(response)["name"] == "Ann"


def test_list_users_by_email_domain_pages(client: httpx.Client) -> None:
    for n in range(3):
        user(client, f"u{n}")
    created(client.post("/api/users", json={"email": "x@other.org", "name": "X"}))
    position = ok(client.post("/api/users/u0/name", json={"name": "Zed"}))["position"]
    first = ok(
        client.get(
            "/api/users",
            params={"email_domain": "example.com", "size": 2, "min_position": position},
        )
    )
    assert (first["total"], first["page"], first["size"]) == (3, 1, 2)
    assert [u["user_id"] for u in first["items"]] == ["u0", "u1"]
    second = ok(
        client.get("/api/users", params={"email_domain": "example.com", "size": 2, "page": 2})
    )
    assert [u["user_id"] for u in second["items"]] == ["u2"]


def test_get_product(client: httpx.Client) -> None:
    position = product(client, "p1", "3.10")["position"]
    body = ok(client.get("/api/products/p1", params={"min_position": position}))
    assert body["product_id"] == "p1" and body["price"] == "3.10" and body["version"] == 1


def test_get_order_is_the_read_model_with_an_etag(client: httpx.Client) -> None:
    position = shop(client)
    response = client.get("/api/orders/o1", params={"min_position": position})
    body = ok(response)
    assert body["customer_name"] == "Ann" and body["status"] == "CREATED"
    assert body["items"] == [
        {"product_id": "p1", "product_name": "Pen", "quantity": 2, "price": "12.50"}
    ]
    assert body["total_amount"] == "25.00" and body["item_count"] == 1
    assert body["shipping_address"] is None and body["tracking_number"] is None
    assert body["version"] == 1
    # The aggregate's version, and a digest of the answer: "1.<16 hex digits>".
    assert re.fullmatch(r'"1\.[0-9a-f]{16}"', response.headers["etag"])
    assert "cache-control" in response.headers


def test_if_none_match_with_the_current_etag_is_304(client: httpx.Client) -> None:
    position = shop(client)
    etag = client.get("/api/orders/o1", params={"min_position": position}).headers["etag"]
    response = client.get("/api/orders/o1", headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.content == b""
    assert response.headers["etag"] == etag
    shipped = ok(client.post("/api/orders/o1/ship", json=SHIP))
    fresh = client.get(
        "/api/orders/o1",
        headers={"If-None-Match": etag},
        params={"min_position": shipped["position"]},
    )
    assert ok(fresh)["status"] == "SHIPPED" and fresh.headers["etag"].startswith('"2.')
    assert fresh.json()["shipping_address"] == "1 Main St"


def test_a_view_changed_by_another_stream_is_not_answered_304(client: httpx.Client) -> None:
    # The order shows its customer's name: renaming the customer changes the order's view
    # without touching the order's own stream (its version stays 1).
    position = shop(client)
    before = client.get("/api/orders/o1", params={"min_position": position})
    assert ok(before)["customer_name"] == "Ann"
    renamed = ok(client.post("/api/users/u1/name", json={"name": "Bea"}))
    after = client.get(
        "/api/orders/o1",
        headers={"If-None-Match": before.headers["etag"]},
        params={"min_position": renamed["position"]},
    )
    assert ok(after)["customer_name"] == "Bea" and after.json()["version"] == 1
    assert after.headers["etag"] != before.headers["etag"]
    assert after.headers["etag"].startswith('"1.')
    unchanged = client.get("/api/orders/o1", headers={"If-None-Match": after.headers["etag"]})
    assert unchanged.status_code == 304


def test_only_the_path_names_the_resource_a_query_naming_another_is_refused(
    client: httpx.Client,
) -> None:
    position = shop(client)
    response = client.get("/api/orders/o1", params={"order_id": "o2", "min_position": position})
    assert fields(problem(response, 422)) == {"order_id"}


def test_an_id_spelled_null_is_an_id_not_a_missing_value(client: httpx.Client) -> None:
    problem(client.get("/api/orders/null"), 404)
    user(client, "null", "Nil")
    assert ok(client.get("/api/users/null", params={"min_position": 1}))["name"] == "Nil"


def test_search_orders_filters_newest_first(client: httpx.Client) -> None:
    shop(client)
    user(client, "u2", "Bob")
    order(client, order_id="o2")
    order(client, customer_id="u2", order_id="o3")
    position = ok(client.post("/api/orders/o2/ship", json=SHIP))["position"]
    everything = ok(client.get("/api/orders", params={"min_position": position}))
    assert [o["order_id"] for o in everything["items"]] == ["o3", "o2", "o1"]
    assert everything["total"] == 3
    mine = ok(client.get("/api/orders", params={"customer_id": "u1"}))
    assert [o["order_id"] for o in mine["items"]] == ["o2", "o1"]
    shipped = ok(client.get("/api/orders", params={"status": "SHIPPED"}))
    assert [o["order_id"] for o in shipped["items"]] == ["o2"]
    created_at = everything["items"][1]["created_at"]
    window = ok(client.get("/api/orders", params={"from": created_at, "to": created_at}))
    assert [o["order_id"] for o in window["items"]] == ["o2"]
    paged = ok(client.get("/api/orders", params={"size": 1, "page": 3}))
    assert [o["order_id"] for o in paged["items"]] == ["o1"] and paged["total"] == 3


def test_customer_statistics(client: httpx.Client) -> None:
    shop(client)
    order(client, order_id="o2", items=[{"product_id": "p1", "quantity": 1, "price": "10.00"}])
    position = ok(client.post("/api/orders/o2/cancel", json={"reason": "r"}))["position"]
    body = ok(client.get("/api/customers/u1/statistics", params={"min_position": position}))
    assert body == {
        "customer_id": "u1",
        "total_orders": 2,
        "total_amount": "35.00",
        "average_order_amount": "17.50",
        "orders_by_status": {"CREATED": 1, "SHIPPED": 0, "CANCELLED": 1},
    }


def test_get_post_with_comments_and_authors(client: httpx.Client) -> None:
    user(client, "u1", "Ann")
    user(client, "u2", "Bob")
    post = created(
        client.post(
            "/api/posts", json={"post_id": "b1", "author_id": "u1", "title": "T", "body": "B"}
        )
    )
    comment = created(client.post("/api/posts/b1/comments", json={"author_id": "u2", "text": "hi"}))
    body = ok(client.get("/api/posts/b1", params={"min_position": comment["position"]}))
    assert (body["post_id"], body["title"], body["body"]) == ("b1", "T", "B")
    assert body["author"] == {"user_id": "u1", "name": "Ann"}
    assert body["comment_count"] == 1 and body["version"] == 2
    [only] = body["comments"]
    assert only["comment_id"] == comment["id"] and only["text"] == "hi"
    assert only["author"] == {"user_id": "u2", "name": "Bob"} and only["created_at"]
    assert post["version"] == 1


@pytest.mark.parametrize(
    "path",
    [
        "/api/users/ghost",
        "/api/products/ghost",
        "/api/orders/ghost",
        "/api/customers/ghost/statistics",
        "/api/posts/ghost",
    ],
)
def test_an_unknown_id_is_404(client: httpx.Client, path: str) -> None:
    problem(client.get(path), 404)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"size": "101"}, "size"),
        ({"size": "0"}, "size"),
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"status": "LOST"}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2024-05-01T00:00:00"}, "to"),
        ({"min_position": "-1"}, "min_position"),
        ({"min_position": "abc"}, "min_position"),
        ({"timeout_ms": "30001"}, "timeout_ms"),
        ({"timeout_ms": "soon"}, "timeout_ms"),
    ],
)
def test_malformed_parameters_are_422(
    client: httpx.Client, params: dict[str, str], field: str
) -> None:
    assert fields(problem(client.get("/api/orders", params=params), 422)) == {field}


def test_list_users_needs_a_domain(client: httpx.Client) -> None:
    assert fields(problem(client.get("/api/users"), 422)) == {"email_domain"}


def test_a_position_not_reached_in_time_is_503_with_the_view_position(tmp_path: Path) -> None:
    # Nothing runs the projections here, so the views stay behind the log.
    settings = shop_settings(tmp_path, projections="off")
    with running(shop_api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        position = shop(client)
        response = client.get("/api/orders/o1", params={"min_position": position, "timeout_ms": 50})
    body = problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert body["projection"] == "orders"
    assert body["position"] == 0 and body["min_position"] == position
    assert body["behind"] == position


def test_a_position_beyond_the_log_is_refused_as_not_existing_yet(client: httpx.Client) -> None:
    position = shop(client)
    response = client.get(
        "/api/orders/o1", params={"min_position": position + 10, "timeout_ms": 50}
    )
    body = problem(response, 422)
    assert fields(body) == {"min_position"}
    assert f"position {position + 10} does not exist yet" in body["detail"]
    assert f"ends at position {position}" in body["detail"]
    assert body["position"] == position and body["min_position"] == position + 10
