"""/health, /openapi.json and /docs."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx

from tests.e2e.shop_client import ok, shop

ROUTES = {
    ("post", "/api/users"),
    ("post", "/api/users/{user_id}/email"),
    ("post", "/api/users/{user_id}/name"),
    ("post", "/api/users/{user_id}/logins"),
    ("post", "/api/products"),
    ("post", "/api/orders"),
    ("post", "/api/orders/{order_id}/ship"),
    ("post", "/api/orders/{order_id}/cancel"),
    ("post", "/api/posts"),
    ("post", "/api/posts/{post_id}/comments"),
    ("get", "/api/users/{user_id}"),
    ("get", "/api/users"),
    ("get", "/api/products/{product_id}"),
    ("get", "/api/orders/{order_id}"),
    ("get", "/api/orders"),
    ("get", "/api/customers/{customer_id}/statistics"),
    ("get", "/api/posts/{post_id}"),
    ("get", "/health"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
}


def test_health_reports_every_projection(client: httpx.Client) -> None:
    position = shop(client)
    client.get("/api/orders/o1", params={"min_position": position})
    body = ok(client.get("/health"))
    assert body["status"] == "UP" and body["head_position"] == position
    assert body["runs_projections"] is True
    names = {p["name"] for p in body["projections"]}
    assert names == {"users", "products", "orders", "blog"}
    for projection in body["projections"]:
        assert projection["status"] == "running"
        assert {"position", "lag_events", "lag_seconds"} <= projection.keys()


def test_health_is_503_when_a_projection_is_stopped(client: httpx.Client, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "views.db") as views:
        views.execute("UPDATE twofold_projections SET status = 'stopped' WHERE name = 'blog'")
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "DOWN"


def test_live_answers_and_ready_says_what_stops_it(client: httpx.Client, tmp_path: Path) -> None:
    live = ok(client.get("/health/live"))
    assert live["status"] == "UP" and live["process_id"] > 0
    ready = ok(client.get("/health/ready"))
    assert ready["status"] == "UP" and ready["stopped"] == []
    assert [(s["name"], s["status"]) for s in ready["stores"]] == [
        ("event_store", "UP"),
        ("read_store", "UP"),
    ]
    with sqlite3.connect(tmp_path / "views.db") as views:
        views.execute("UPDATE twofold_projections SET status = 'stopped' WHERE name = 'blog'")
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert (response.json()["status"], response.json()["stopped"]) == ("DOWN", ["blog"])
    assert client.get("/health/live").status_code == 200


def test_openapi_documents_every_route_with_schemas_and_errors(client: httpx.Client) -> None:
    schema = ok(client.get("/openapi.json"))
    assert schema["openapi"].startswith("3.1")
    # The admin routes have a test of their own (tests/e2e/test_admin_api.py).
    paths = {p: m for p, m in schema["paths"].items() if not p.startswith("/admin/api/")}
    found = {(m, p) for p, methods in paths.items() for m in methods}
    assert found == ROUTES
    for path, methods in paths.items():
        for method, operation in methods.items():
            responses = operation["responses"]
            success = responses.get("201") or responses.get("200")
            assert success and "content" in success, (method, path)
            if path.startswith("/api/"):
                assert {"401", "403", "404", "422", "503"} <= responses.keys(), (method, path)
                problem = responses["422"]["content"]["application/problem+json"]
                assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
            if method == "post":
                assert {"409", "412"} <= responses.keys()
                assert "requestBody" in operation


def test_docs_page_loads_the_schema(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/openapi.json" in response.text


def test_docs_page_needs_nothing_outside_the_server(client: httpx.Client) -> None:
    page = client.get("/docs").text
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert references, "the page names its assets"
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        asset = client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 100, reference
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert client.get("/docs/assets/index.html").status_code == 404  # only what the page uses


def test_request_id_is_echoed_or_made_up(client: httpx.Client) -> None:
    given = client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/api/users/nobody").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    unfit = client.get("/health", headers={"X-Request-Id": "x" * 500}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", unfit)
