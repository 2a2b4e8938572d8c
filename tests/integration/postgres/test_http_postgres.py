"""The HTTP service and the shop unchanged on PostgreSQL, set by URLs only.

`twofold serve --workers 2` on one PostgreSQL schema: both workers append, each projection
runs in exactly one process (leases), and a client reads its own writes whichever worker
answers (woken by NOTIFY). Then API processes with projections off and a `twofold worker`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import environment, serving, twofold
from tests.e2e.shop_client import created, ok, product, user
from tests.e2e.test_applied_once import assert_each_event_applied_once
from tests.e2e.test_workers import health_at, pinned_clients

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DEADLINE = 60.0  # seconds; for a broken run to fail rather than hang


def shop_round(writer: httpx.Client, reader: httpx.Client, n: int) -> None:
    user = created(
        writer.post("/api/users", json={"user_id": f"u{n}", "email": f"u{n}@x.io", "name": "A"})
    )
    seen = ok(reader.get(f"/api/users/u{n}", params={"min_position": user["position"]}))
    assert seen["name"] == "A"
    created(reader.post("/api/products", json={"product_id": f"p{n}", "name": "P", "price": "2"}))
    order = created(
        reader.post(
            "/api/orders",
            json={
                "customer_id": f"u{n}",
                "items": [{"product_id": f"p{n}", "quantity": 2, "price": "2.50"}],
            },
        )
    )
    path = f"/api/orders/{order['id']}"
    response = writer.get(path, params={"min_position": order["position"]})
    view = ok(response)
    assert view["customer_name"] == "A" and view["total_amount"] == "5.00"
    # The stored JSONB goes out as it is: same fields as on SQLite, with its ETag.
    assert set(view) == {
        "order_id", "customer_id", "customer_name", "status", "items", "total_amount",
        "item_count", "shipping_address", "tracking_number", "cancel_reason", "created_at",
        "updated_at", "version",
    }  # fmt: skip
    etag = response.headers["etag"]
    assert etag.startswith('"1.')
    assert writer.get(path, headers={"If-None-Match": etag}).status_code == 304


def test_two_server_workers_share_projections_and_read_their_writes(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    target = f"{postgres_url}?schema={pg_schema}"
    env = environment(TWOFOLD_EVENT_STORE=target, TWOFOLD_READ_STORE=target)
    with serving(["--workers", "2"], cwd=tmp_path, env=env) as (url, _), ExitStack() as stack:
        clients = pinned_clients(url, stack)
        (_, a), (_, b) = clients.items()
        for n in range(4):
            shop_round(a, b, n)
        health = health_at(a, 12)
        assert health["status"] == "UP" and health["head_position"] == 12
        assert all(p["position"] == 12 for p in health["projections"])
    # Nothing was written to SQLite files: the URLs alone moved the service.
    assert not list(tmp_path.glob("*.db"))


def test_api_without_projections_reads_writes_applied_by_a_worker(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    target = f"{postgres_url}?schema={pg_schema}"
    env = environment(TWOFOLD_EVENT_STORE=target, TWOFOLD_READ_STORE=target)
    api_env = {**env, "TWOFOLD_PROJECTIONS": "off"}
    with serving([], cwd=tmp_path, env=api_env) as (url, _):
        worker = twofold("worker", cwd=tmp_path, env=env)
        try:
            with httpx.Client(base_url=url) as client:
                user = created(
                    client.post(
                        "/api/users", json={"user_id": "u1", "email": "u@x.io", "name": "Ann"}
                    )
                )
                view = client.get(
                    "/api/users/u1",
                    params={"min_position": user["position"], "timeout_ms": 30000},
                )
                assert ok(view)["name"] == "Ann"
                assert not ok(client.get("/health"))["runs_projections"]
        finally:
            worker.terminate()
            worker.communicate(timeout=DEADLINE)  # reaps it and closes its pipe


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_orders_are_counted_once_in_the_customer_statistics(
    postgres_url: str, pg_schema: str, tmp_path: Path, workers: int
) -> None:
    target = f"{postgres_url}?schema={pg_schema}"
    env = environment(TWOFOLD_EVENT_STORE=target, TWOFOLD_READ_STORE=target)
    served = serving(["--workers", str(workers)], cwd=tmp_path, env=env)
    with served as (url, _), httpx.Client(base_url=url, timeout=DEADLINE) as client:
        user(client, "c1")
        product(client, "p1", price="1.00")

        def place(_: int) -> int:
            with httpx.Client(base_url=url, timeout=DEADLINE) as own:
                body = {
                    "customer_id": "c1",
                    "items": [{"product_id": "p1", "quantity": 1, "price": "1.00"}],
                }
                position: int = created(own.post("/api/orders", json=body))["position"]
                return position

        with ThreadPoolExecutor(8) as pool:
            positions = list(pool.map(place, range(40)))
        # Read after every order's position: both answers reflect all 40 orders.
        wait = {"min_position": max(positions), "timeout_ms": 30000}
        listed = ok(client.get("/api/orders", params={"customer_id": "c1", **wait}))
        statistics = ok(client.get("/api/customers/c1/statistics", params=wait))
    assert listed["total"] == 40
    assert statistics["total_orders"] == listed["total"]
    assert statistics["total_amount"] == "40.00"


def test_serve_and_workers_on_postgres_apply_each_event_once(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    target = f"{postgres_url}?schema={pg_schema}"
    env = environment(TWOFOLD_EVENT_STORE=target, TWOFOLD_READ_STORE=target)
    assert_each_event_applied_once(env, tmp_path)
