"""The views on PostgreSQL, through HTTP: a poison event parked, a projection retrying on
what PostgreSQL cannot store, views of another event store refused, and an ETag that
changes with a view changed by another stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import running
from tests.e2e.poison import append_to, poison_order, renamed_with_nul
from tests.e2e.processes import environment, serving
from tests.e2e.shop_client import ok, order, problem, product, user
from tests.e2e.test_projection_health import projection
from tests.integration.postgres.conftest import drop_schema
from twofold.examples.shop.http import api as shop_api
from twofold.settings import Settings

pytestmark = pytest.mark.postgres

DEADLINE = 60.0  # seconds; for a broken run to fail rather than hang


@pytest.fixture
def target(postgres_url: str, pg_schema: str) -> str:
    return f"{postgres_url}?schema={pg_schema}"


@pytest.fixture
def other_schema(postgres_url: str, pg_schema: str) -> Iterator[str]:
    schema = f"{pg_schema}_b"
    try:
        yield schema
    finally:
        drop_schema(postgres_url, schema)


def served(target: str, tmp_path: Path) -> Any:
    env = environment(TWOFOLD_EVENT_STORE=target, TWOFOLD_READ_STORE=target)
    return serving([], cwd=tmp_path, env=env)


def test_a_poison_event_is_parked_and_the_service_goes_on(target: str, tmp_path: Path) -> None:
    with served(target, tmp_path) as (url, _), httpx.Client(base_url=url) as client:
        user(client)
        product(client)
        poisoned = append_to(target, "Order-o9", poison_order("o9"))
        placed = order(client, order_id="o1")
        view = ok(client.get("/api/orders/o1", params={"min_position": placed["position"]}))
        assert view["total_amount"] == "25.00"
        health = ok(client.get("/health"))
        assert health["status"] == "DEGRADED"
        orders = projection(health, "orders")
        assert (orders["status"], orders["parked"]) == ("running", 2)
        assert orders["error"].startswith(f"position {poisoned - 1} (stream 'Order-o9')")
        assert "InvalidOperation" in orders["error"]


def test_text_postgresql_cannot_store_is_parked_and_the_service_goes_on(
    target: str, tmp_path: Path
) -> None:
    with served(target, tmp_path) as (url, _), httpx.Client(base_url=url) as client:
        user(client)
        poisoned = append_to(target, "User-u1", [renamed_with_nul("u1")])
        later = user(client, "u2")
        ok(client.get("/api/users/u2", params={"min_position": later["position"]}))
        health = ok(client.get("/health"))
        assert health["status"] == "DEGRADED"
        users = projection(health, "users")
        assert (users["status"], users["parked"]) == ("running", 1)
        assert users["error"].startswith(f"position {poisoned} (stream 'User-u1')")
        assert "UntranslatableCharacter" in users["error"]


def test_a_projection_retrying_on_a_store_error_says_so_until_it_passes(
    postgres_url: str, pg_schema: str, target: str, tmp_path: Path
) -> None:
    with served(target, tmp_path) as (url, _), httpx.Client(base_url=url) as client:
        first = user(client)
        ok(client.get("/api/users/u1", params={"min_position": first["position"]}))
        # The store refuses the users view's next commit for a reason of its own.
        table = f'"{pg_schema}".v_user_profiles_g1'
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT no_bea CHECK (doc->>'name' <> 'Bea')")
        renamed = ok(client.post("/api/users/u1/name", json={"name": "Bea"}))
        users = wait_for(client, lambda u: u["status"] == "retrying" and u["attempts"] >= 2)
        assert users["position"] < renamed["position"] and users["parked"] == 0
        assert users["error"].startswith("CheckViolation") and "no_bea" in users["error"]
        assert client.get("/health").json()["status"] == "DEGRADED"
        # The other views go on.
        added = product(client, "p2")
        ok(client.get("/api/products/p2", params={"min_position": added["position"]}))

        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT no_bea")
        view = client.get(
            "/api/users/u1", params={"min_position": renamed["position"], "timeout_ms": 30000}
        )
        assert ok(view)["name"] == "Bea"
        # The status is written after the commit that settled it: wait for it (health poll).
        users = wait_for(client, lambda u: u["status"] != "retrying")
        assert (users["status"], users["attempts"], users["error"]) == ("running", 0, None)


def wait_for(client: httpx.Client, done: Any, name: str = "users") -> dict[str, Any]:
    """Poll /health (with a deadline) until ``done(projection report)``."""
    deadline = time.monotonic() + DEADLINE
    while True:
        response = client.get("/health")
        report = projection(response.json(), name)
        if done(report):
            return report
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def test_views_of_another_event_store_are_refused(
    postgres_url: str, target: str, other_schema: str
) -> None:
    views = target
    first = Settings(event_store=target, read_store=views)
    with running(shop_api.asgi(first)) as url, httpx.Client(base_url=url) as client:
        last = user(client, "a")
        ok(client.get("/api/users/a", params={"min_position": last["position"]}))
    # The same views, another (longer) event log.
    other = f"{postgres_url}?schema={other_schema}"
    longer = shop_api.asgi(Settings(event_store=other, read_store=other))
    with running(longer) as url, httpx.Client(base_url=url) as client:
        user(client, "b")
        user(client, "c")
    mixed = shop_api.asgi(Settings(event_store=other, read_store=views))
    with running(mixed) as url, httpx.Client(base_url=url) as client:
        body = problem(client.get("/api/users/b"), 503)
        assert body["type"].endswith("foreign-views")
        response = client.get("/health")
        assert response.status_code == 503 and response.json()["status"] == "DOWN"
        users = projection(response.json(), "users")
        assert users["status"] == "refused"
        assert "were built from event store" in users["error"]


def test_a_checkpoint_beyond_the_head_is_refused(
    postgres_url: str, pg_schema: str, target: str
) -> None:
    settings = Settings(event_store=target, read_store=target)
    with running(shop_api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        user(client, "a")
        last = user(client, "b")
        ok(client.get("/api/users/b", params={"min_position": last["position"]}))
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # the log lost, say, to a restore
        conn.execute(f'TRUNCATE "{pg_schema}".events')
    with running(shop_api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        problem(client.get("/api/users/a"), 503)
        users = projection(client.get("/health").json(), "users")
        assert users["status"] == "refused"
        assert f"up to position {last['position']}" in users["error"]
        assert "ends at position 0" in users["error"]


def test_a_view_changed_by_another_stream_gets_another_etag(target: str) -> None:
    settings = Settings(event_store=target, read_store=target)
    with running(shop_api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        user(client)
        product(client)
        placed = order(client, order_id="o1")
        before = client.get("/api/orders/o1", params={"min_position": placed["position"]})
        assert ok(before)["customer_name"] == "Ann"
        renamed = ok(client.post("/api/users/u1/name", json={"name": "Bea"}))
        after = client.get(
            "/api/orders/o1",
            headers={"If-None-Match": before.headers["etag"]},
            params={"min_position": renamed["position"]},
        )
        assert ok(after)["customer_name"] == "Bea" and after.json()["version"] == 1
        assert after.headers["etag"] != before.headers["etag"]
        fresh = client.get("/api/orders/o1", headers={"If-None-Match": after.headers["etag"]})
        assert fresh.status_code == 304


def test_a_position_beyond_the_log_is_refused_as_not_existing_yet(target: str) -> None:
    settings = Settings(event_store=target, read_store=target)
    with running(shop_api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        last = user(client)
        wanted = last["position"] + 10
        response = client.get("/api/users/u1", params={"min_position": wanted, "timeout_ms": 50})
        body = problem(response, 422)
        assert body["errors"][0]["field"] == "min_position"
        assert f"position {wanted} does not exist yet" in body["detail"]
