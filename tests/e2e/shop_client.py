"""Small helpers that drive the shop over HTTP, so tests read as the scenario they check."""

from __future__ import annotations

from typing import Any

import httpx


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {error["field"] for error in body["errors"]}


def head(client: httpx.Client) -> int:
    """The position of the newest event in the log."""
    position: int = client.get("/health").json()["head_position"]
    return position


def user(client: httpx.Client, user_id: str = "u1", name: str = "Ann") -> dict[str, Any]:
    return created(
        client.post(
            "/api/users", json={"user_id": user_id, "email": f"{user_id}@example.com", "name": name}
        )
    )


def product(
    client: httpx.Client, product_id: str = "p1", price: str = "12.50", name: str = "Pen"
) -> dict[str, Any]:
    return created(
        client.post("/api/products", json={"product_id": product_id, "name": name, "price": price})
    )


def order(
    client: httpx.Client,
    customer_id: str = "u1",
    items: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    if items is None:
        items = [{"product_id": "p1", "quantity": 2, "price": "12.50"}]
    return created(
        client.post("/api/orders", json={"customer_id": customer_id, "items": items, **extra})
    )


def shop(client: httpx.Client) -> int:
    """A user u1, a product p1 and an order of two; returns the order's position."""
    user(client)
    product(client)
    position: int = order(client, order_id="o1")["position"]
    return position
