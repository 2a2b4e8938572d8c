"""What /health says of the projections, through `twofold serve` on SQLite files.

A poison event is parked and the service goes on (DEGRADED); views left beside a replaced
event store are refused (DOWN); projections nobody runs are reported as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import running, shop_settings
from tests.e2e.poison import append_to, poison_order
from tests.e2e.processes import environment, serving
from tests.e2e.shop_client import ok, order, problem, product, user
from twofold.examples.shop.http import api as shop_api


def projection(health: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in health["projections"] if p["name"] == name)
    return found


def test_a_poison_event_is_parked_and_the_service_goes_on(tmp_path: Path) -> None:
    with (
        serving([], cwd=tmp_path, env=environment()) as (url, _),
        httpx.Client(base_url=url) as client,
    ):
        user(client)
        product(client)
        poisoned = append_to(f"sqlite:///{tmp_path}/twofold.db", "Order-o9", poison_order("o9"))
        placed = order(client, order_id="o1")
        assert placed["position"] > poisoned
        # The orders view went past the poison: the order placed after it is there.
        view = ok(client.get("/api/orders/o1", params={"min_position": placed["position"]}))
        assert view["total_amount"] == "25.00"
        assert client.get("/api/orders/o9").status_code == 404
        statistics = ok(client.get("/api/customers/u1/statistics"))
        assert statistics["total_orders"] == 1

        response = client.get("/health")
        assert response.status_code == 200
        health = response.json()
        assert health["status"] == "DEGRADED"
        orders = projection(health, "orders")
        assert (orders["status"], orders["parked"], orders["lag_events"]) == ("running", 2, 0)
        assert orders["error"].startswith(f"position {poisoned - 1} (stream 'Order-o9')")
        assert "InvalidOperation" in orders["error"]
        assert projection(health, "users")["parked"] == 0


def test_views_of_a_replaced_event_store_are_refused_and_health_is_down(tmp_path: Path) -> None:
    env = environment()
    with serving([], cwd=tmp_path, env=env) as (url, _), httpx.Client(base_url=url) as client:
        user(client, "a")
        last = user(client, "b")
        ok(client.get("/api/users/b", params={"min_position": last["position"]}))
    for name in ("twofold.db", "twofold.db-wal", "twofold.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)  # the event log goes; the views stay

    with serving([], cwd=tmp_path, env=env) as (url, _), httpx.Client(base_url=url) as client:
        user(client, "c")
        # Neither the deleted user a nor a 404 for c: the views do not belong to this log.
        for path in ("/api/users/a", "/api/users/c?min_position=1"):
            body = problem(client.get(path), 503)
            assert body["type"].endswith("foreign-views") and body["projection"] == "users"
            assert "rebuild" in body["detail"]
        response = client.get("/health")
        assert response.status_code == 503
        health = response.json()
        assert health["status"] == "DOWN"
        users = projection(health, "users")
        assert users["status"] == "refused"
        assert "do not belong to this event store" in users["error"]
        assert "TWOFOLD_READ_STORE" in users["error"]


def test_projections_nobody_runs_are_reported_unassigned(tmp_path: Path) -> None:
    idle = shop_api.asgi(shop_settings(tmp_path, projections="off"))
    with running(idle) as url, httpx.Client(base_url=url) as client:
        response = client.get("/health")
        assert response.status_code == 200
        health = response.json()
        assert health["status"] == "DEGRADED" and health["runs_projections"] is False
        for report in health["projections"]:
            assert report["status"] == "unassigned"
            assert "TWOFOLD_PROJECTIONS=run" in report["error"]

        # Another process on the same files runs them: now they are attended.
        with running(shop_api.asgi(shop_settings(tmp_path))):
            health = ok(client.get("/health"))
            assert health["status"] == "UP"
            assert {p["status"] for p in health["projections"]} == {"running"}
