"""/admin/api/ over HTTP, against the shop on SQLite files and on a PostgreSQL schema.

Each test serves the shop on a free loopback port (no keys: loopback-only) and operates
it as an operator would: status and lag, a poison event parked, shown, retried and skipped,
pause and resume, rebuilds followed as a job and as server-sent events, reset, streams and
their events, correlation and causation followed, and verify.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from starlette.routing import Route

from tests.e2e.conftest import running, shop_settings
from tests.e2e.poison import append_to, poison_order
from tests.e2e.processes import environment, serving
from tests.e2e.shop_client import ok, order, problem, product, shop, user
from tests.integration.postgres.conftest import pg_schema, postgres_url
from tests.integration.redis.conftest import namespace, redis_url
from twofold.codec import Codec
from twofold.examples import shop as shop_app
from twofold.examples.bank.http import api as bank_api
from twofold.examples.shop.http import api as shop_api
from twofold.settings import Settings

__all__ = ["namespace", "pg_schema", "postgres_url", "redis_url"]  # fixtures, used by name

DEADLINE = 60.0  # seconds: for a broken run to fail rather than hang, not a speed bound


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Settings, str]:
    """Settings for the shop and the URL of its event store."""
    if request.param == "sqlite":
        return shop_settings(tmp_path), f"sqlite:///{tmp_path}/events.db"
    url = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("pg_schema")
    store = f"{url}?schema={schema}"
    return Settings(event_store=store, read_store=store), store


@pytest.fixture
def admin(target: tuple[Settings, str]) -> Iterator[httpx.Client]:
    with (
        running(shop_api.asgi(target[0])) as url,
        httpx.Client(base_url=url, timeout=DEADLINE) as client,
    ):
        yield client


def projections(client: httpx.Client) -> dict[str, dict[str, Any]]:
    body = ok(client.get("/admin/api/projections"))
    return {p["name"]: p for p in body["projections"]}


def caught_up(client: httpx.Client, position: int) -> None:
    """Wait (min_position) until the views the shop's queries read reached ``position``."""
    ok(client.get("/api/users/u1", params={"min_position": position, "timeout_ms": 30000}))


def test_projections_report_status_position_and_lag(admin: httpx.Client) -> None:
    position = shop(admin)
    caught_up(admin, position)
    body = ok(admin.get("/admin/api/projections"))
    assert body["head_position"] == position
    reports = {p["name"]: p for p in body["projections"]}
    assert set(reports) >= {"users", "orders"}
    users = reports["users"]
    assert users["status"] == "running" and users["level"] == "UP"
    assert (users["position"], users["lag_events"], users["lag_seconds"]) == (position, 0, 0.0)
    assert (users["parked"], users["error"], users["paused"]) == (0, None, False)
    assert ok(admin.get("/admin/api/projections/users")) == users

    overview = ok(admin.get("/admin/api/overview"))
    assert overview["status"] == "UP" and overview["head_position"] == position
    assert overview["projections"] == len(reports) and overview["parked"] == 0
    assert (overview["relays"], overview["cache"]) == ([], None)  # neither is configured
    assert {b["name"] for b in overview["breakers"]} >= {"stores:users"}
    # Read from the service's metrics: the three commands, the query, their p99.
    commands, queries = overview["commands"], overview["queries"]
    assert commands["total"] >= 3 and queries["total"] >= 1
    assert commands["p99_seconds"] > 0 and queries["p99_seconds"] > 0
    user(admin, "u2")
    again = ok(admin.get("/admin/api/overview"))
    assert again["commands"]["total"] == commands["total"] + 1
    assert again["commands"]["per_second"] > 0
    assert "all worker processes" in again["figures"]


def test_a_parked_event_is_shown_retried_and_skipped(
    admin: httpx.Client, target: tuple[Settings, str]
) -> None:
    user(admin)
    product(admin)
    poisoned = append_to(target[1], "Order-o9", poison_order("o9"))
    placed = order(admin, order_id="o1")
    ok(admin.get("/api/orders/o1", params={"min_position": placed["position"]}))

    orders = projections(admin)["orders"]
    assert (orders["parked"], orders["level"]) == (2, "DEGRADED")
    letters = ok(admin.get("/admin/api/dead-letters", params={"projection": "orders"}))
    parked = letters["dead_letters"]
    assert [(d["stream_id"], d["position"]) for d in parked] == [
        ("Order-o9", poisoned - 1),
        ("Order-o9", poisoned),
    ]
    first = parked[0]
    assert first["event"]["type"] == "OrderCreated"
    assert first["event"]["data"]["order_id"] == "o9"
    assert "InvalidOperation" in first["error"]
    one = ok(admin.get(f"/admin/api/projections/orders/dead-letters/{poisoned - 1}"))
    assert one == first
    by_stream = ok(admin.get("/admin/api/dead-letters", params={"stream_id": "Order-o9"}))
    assert {d["projection"] for d in by_stream["dead_letters"]} >= {"orders"}

    # Retrying applies nothing: the event still fails, and its stream stays parked in order.
    retried = ok(admin.post("/admin/api/projections/orders/dead-letters/retry", json={}))
    assert (retried["applied"], retried["remaining"]) == (0, 2)

    skipped = ok(
        admin.post(
            "/admin/api/projections/orders/dead-letters/skip", json={"stream_id": "Order-o9"}
        )
    )
    assert (skipped["skipped"], skipped["remaining"]) == (2, 0)
    orders = projections(admin)["orders"]
    assert (orders["parked"], orders["level"], orders["status"]) == (0, "UP", "running")
    assert ok(admin.get("/admin/api/dead-letters"))["dead_letters"] == [
        d for d in ok(admin.get("/admin/api/dead-letters"))["dead_letters"]
        if d["projection"] != "orders"
    ]  # fmt: skip
    problem(admin.get(f"/admin/api/projections/orders/dead-letters/{poisoned}"), 404)


def test_pause_is_reported_and_resume_catches_up(admin: httpx.Client) -> None:
    caught_up(admin, user(admin)["position"])
    paused = ok(admin.post("/admin/api/projections/users/pause"))
    assert paused["action"] == "pause"
    assert paused["status"]["paused"] is True and paused["status"]["status"] == "paused"
    assert paused["status"]["level"] == "DEGRADED"
    assert ok(admin.get("/admin/api/overview"))["status"] == "DEGRADED"

    resumed = ok(admin.post("/admin/api/projections/users/resume"))
    assert resumed["status"]["paused"] is False
    renamed = ok(admin.post("/api/users/u1/name", json={"name": "Bo"}))
    caught_up(admin, renamed["position"])
    assert projections(admin)["users"]["status"] == "running"


def wait_for_job(client: httpx.Client, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while True:
        job = ok(client.get(location))
        if job["status"] != "running":
            return job
        assert time.monotonic() < deadline, f"the rebuild did not finish: {job}"
        time.sleep(0.05)  # a poll interval, not a wait for an outcome


def test_a_rebuild_runs_as_a_job_and_reaches_the_head(admin: httpx.Client) -> None:
    position = shop(admin)
    started = admin.post("/admin/api/projections/orders/rebuild")
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["projection"] == "orders"
    assert started.headers["location"] == f"/admin/api/jobs/{job['id']}"
    finished = wait_for_job(admin, started.headers["location"])
    assert finished["status"] == "done", finished
    assert finished["checkpoint"] == position
    assert finished["done"] == finished["total"]
    assert ok(admin.get("/api/orders/o1"))["order_id"] == "o1"


def test_a_rebuild_reports_its_progress_as_server_sent_events(admin: httpx.Client) -> None:
    position = shop(admin)
    events: list[tuple[str, dict[str, Any]]] = []
    with admin.stream(
        "POST", "/admin/api/projections/users/rebuild", headers={"accept": "text/event-stream"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, msgspec.json.decode(line.removeprefix("data: "))))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) <= {"progress"}
    done = [data["done"] for _, data in events]
    assert done == sorted(done)
    assert events[-1][1]["checkpoint"] == position


def test_a_reset_empties_the_views_and_they_fill_again(admin: httpx.Client) -> None:
    position = shop(admin)
    caught_up(admin, position)
    reset = ok(admin.post("/admin/api/projections/users/reset"))
    assert reset["action"] == "reset"
    # The views fill again from the start of the log.
    view = ok(admin.get("/api/users/u1", params={"min_position": position, "timeout_ms": 30000}))
    assert view["name"] == "Ann"


def test_streams_are_listed_paged_and_shown_with_data_and_metadata(admin: httpx.Client) -> None:
    correlation = {"x-correlation-id": "checkout-42"}
    created = admin.post(
        "/api/users",
        json={"user_id": "u1", "email": "u1@example.com", "name": "Ann"},
        headers=correlation,
    )
    assert created.status_code == 201
    assert admin.post(
        "/api/products", json={"product_id": "p1", "name": "Pen", "price": "1.50"},
        headers=correlation,
    ).status_code == 201  # fmt: skip

    first = ok(admin.get("/admin/api/streams", params={"limit": 1}))
    assert len(first["streams"]) == 1 and first["next_after"] == first["streams"][0]["stream_id"]
    rest = ok(admin.get("/admin/api/streams", params={"after": first["next_after"]}))
    ids = [s["stream_id"] for s in first["streams"] + rest["streams"]]
    assert ids == sorted(ids) and {"User-u1", "Product-p1"} <= set(ids)
    assert rest["next_after"] is None

    stream = ok(admin.get("/admin/api/streams/User-u1"))
    assert (stream["stream_id"], stream["version"], stream["next_from_version"]) == (
        "User-u1",
        1,
        None,
    )
    (event,) = stream["events"]
    assert (event["type"], event["data"]["user_id"], event["position"]) == (
        "UserCreated",
        "u1",
        created.json()["position"],
    )
    assert event["metadata"]["correlation_id"] == "checkout-42"

    # Follow the correlation id from this event to every event it ties together.
    found = ok(admin.get("/admin/api/correlations", params={"correlation_id": "checkout-42"}))
    assert found["complete"] is True
    assert [e["stream_id"] for e in found["events"]] == ["User-u1", "Product-p1"]
    # And an event by its id.
    assert ok(admin.get(f"/admin/api/events/{event['event_id']}")) == event
    problem(admin.get("/admin/api/streams/User-nobody"), 404)


def test_causation_is_followed_from_event_to_event(
    admin: httpx.Client, target: tuple[Settings, str]
) -> None:
    cause = user(admin)
    stream = ok(admin.get("/admin/api/streams/User-u1"))
    cause_id = stream["events"][0]["event_id"]
    metadata = msgspec.json.encode({"causation_id": cause_id, "correlation_id": "c-7"})
    renamed = shop_app.UserRenamed(user_id="u1", old_name="Ann", new_name="Bo")
    effect = Codec(shop_app.EVENTS).new_event(renamed, metadata)
    position = append_to(target[1], "User-u1", [effect])
    assert position > cause["position"]

    caused = ok(admin.get(f"/admin/api/events/{cause_id}/caused"))
    assert [(e["position"], e["metadata"]["causation_id"]) for e in caused["events"]] == [
        (position, cause_id)
    ]
    # Back from the effect to its cause.
    effect = caused["events"][0]
    assert (
        ok(admin.get(f"/admin/api/events/{effect['metadata']['causation_id']}"))["position"]
        == (cause["position"])
    )
    paged = ok(admin.get("/admin/api/streams/User-u1", params={"limit": 1}))
    assert paged["next_from_version"] == 2
    second = ok(admin.get("/admin/api/streams/User-u1", params={"from_version": 2}))
    assert [e["position"] for e in second["events"]] == [position]


def test_verify_compares_the_live_views_with_a_replay(admin: httpx.Client) -> None:
    caught_up(admin, shop(admin))
    body = ok(admin.post("/admin/api/verify", json={"projection": "orders"}))
    assert body["consistent"] is True
    (report,) = body["report"]["projections"]
    assert report["name"] == "orders" and report["consistent"] is True
    assert {c["name"] for c in report["collections"]} and all(
        c["missing"] == c["extra"] == c["different"] == 0 for c in report["collections"]
    )
    everything = ok(admin.post("/admin/api/verify"))
    assert {p["name"] for p in everything["report"]["projections"]} == set(projections(admin))


def test_bad_input_is_refused_naming_what_was_wrong(admin: httpx.Client) -> None:
    unknown = problem(admin.post("/admin/api/projections/nope/pause"), 404)
    assert "nope" in unknown["detail"] and "users" in unknown["detail"]
    problem(admin.post("/admin/api/projections/nope/rebuild"), 404)
    bad = problem(admin.get("/admin/api/projections/orders/dead-letters/0"), 422)
    assert bad["errors"][0]["field"] == "position"
    assert problem(admin.get("/admin/api/streams?limit=0"), 422)["errors"][0]["field"] == "limit"
    assert problem(admin.get("/admin/api/streams?page=2"), 422)["errors"][0]["field"] == "page"
    extra = problem(
        admin.post("/admin/api/projections/orders/dead-letters/skip", json={"stream": "x"}), 422
    )
    assert "stream" in extra["detail"]
    positions = problem(
        admin.post("/admin/api/projections/orders/dead-letters/skip", json={"positions": [0]}),
        422,
    )
    assert positions["errors"][0]["field"].startswith("positions")
    problem(
        admin.post(
            "/admin/api/verify",
            content=b"projection=orders",
            headers={"content-type": "text/plain"},
        ),
        415,
    )
    assert problem(admin.get("/admin/api/events/not-a-uuid"), 422)["errors"][0]["field"] == (
        "event_id"
    )
    assert problem(admin.get("/admin/api/correlations"), 422)["errors"][0]["field"] == (
        "correlation_id"
    )
    problem(admin.get("/admin/api/jobs/0123456789abcdef0123456789abcdef"), 404)
    # Nothing was changed by any of it.
    assert all(not p["paused"] for p in projections(admin).values())


def test_every_admin_route_is_in_the_openapi_document(admin: httpx.Client) -> None:
    document = ok(admin.get("/openapi.json"))
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/admin/api/")
        for method in operations
    }
    served = {
        (method, route.path.replace(":path}", "}").replace(":int}", "}"))
        for route in shop_api.asgi(Settings()).routes
        if isinstance(route, Route) and route.path.startswith("/admin/api/")
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert documented == served
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not path.startswith("/admin/api/"):
                continue
            responses = operation["responses"]
            assert "content" in (responses.get("200") or responses["202"]), (method, path)
            assert {"401", "403", "503"} <= responses.keys(), (method, path)
            problem = responses["403"]["content"]["application/problem+json"]
            assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
            assert operation["tags"] == ["admin"]
    name = document["paths"]["/admin/api/projections/{name}"]["get"]["parameters"][0]
    assert set(name["schema"]["enum"]) == set(projections(admin))


ADMIN_KEY = "admin-key-0123456789abcdef"
APP_KEY = "app-key-0123456789abcdef"


def test_with_keys_the_admin_scope_is_needed(tmp_path: Path) -> None:
    keys = f"ops:{ADMIN_KEY}=admin,app:{APP_KEY}=commands+queries"
    env = environment(TWOFOLD_API_KEYS=keys)
    with serving([], cwd=tmp_path, env=env) as (url, _), httpx.Client(base_url=url) as client:
        missing = problem(client.get("/admin/api/projections"), 401)
        assert "needs a key" in missing["detail"]
        lacking = problem(
            client.get("/admin/api/projections", headers={"authorization": f"Bearer {APP_KEY}"}),
            403,
        )
        assert "'admin' scope" in lacking["detail"]
        allowed = client.get("/admin/api/projections", headers={"x-api-key": ADMIN_KEY})
        assert {p["name"] for p in ok(allowed)["projections"]} >= {"users", "orders"}
        # The page holds no data: it is served, and asks for the key itself.
        page = client.get("/admin")
        assert page.status_code == 200 and "API key" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert client.get("/admin/assets/admin.js").status_code == 200
        assert client.get("/admin/assets/nothing.js").status_code == 404


async def test_without_keys_another_machine_is_refused(tmp_path: Path) -> None:
    # The request comes from 198.51.100.7, as the ASGI server would say of a remote client.
    app = shop_api.asgi(shop_settings(tmp_path))
    remote = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://127.0.0.1:8000") as client:
        for path in ("/admin/api/projections", "/admin"):
            refused = problem(await client.get(path), 403)
            assert "198.51.100.7" in refused["detail"] and "ssh -L" in refused["detail"]


def test_without_keys_proxies_and_other_sites_are_refused(tmp_path: Path) -> None:
    app = shop_api.asgi(shop_settings(tmp_path))
    with running(app) as url, httpx.Client(base_url=url) as client:
        proxied = client.get("/admin/api/projections", headers={"x-forwarded-for": "1.2.3.4"})
        # uvicorn takes the forwarded address as the client's (it trusts a proxy on
        # loopback); the guard refuses it as remote, and refuses any forwarded request.
        detail = problem(proxied, 403)["detail"]
        assert "1.2.3.4 is not it" in detail or "proxy" in detail
        forged = client.post(
            "/admin/api/projections/users/pause", headers={"origin": "https://evil.example"}
        )
        assert "another site" in problem(forged, 403)["detail"]
        rebound = client.get("/admin/api/projections", headers={"host": "evil.example"})
        assert "evil.example" in problem(rebound, 403)["detail"]
        # Nothing was paused by the refused request.
        assert not projections(client)["users"]["paused"]


def test_a_users_own_http_api_serves_the_admin_api_and_dashboard(tmp_path: Path) -> None:
    settings = Settings(
        event_store=f"sqlite:///{tmp_path}/bank.db",
        read_store=f"sqlite:///{tmp_path}/bank-views.db",
    )
    with running(bank_api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        opened = client.post("/accounts", json={"owner": "Ann", "account_id": "ann"})
        assert opened.status_code == 201
        position = opened.json()["position"]
        ok(client.get("/accounts/ann", params={"min_position": position}))
        reports = ok(client.get("/admin/api/projections"))
        assert reports["head_position"] == position
        assert [p["name"] for p in reports["projections"]] == ["balances"]
        assert ok(client.get("/admin/api/streams"))["streams"][0]["stream_id"] == "Account-ann"
        assert "twofold admin" in client.get("/admin").text


def test_with_several_workers_a_rebuild_is_followed_on_its_own_connection(
    tmp_path: Path,
) -> None:
    with (
        serving(["--workers", "2"], cwd=tmp_path, env=environment()) as (url, _),
        httpx.Client(base_url=url, timeout=DEADLINE) as client,
    ):
        position = shop(client)
        kinds: list[str] = []
        last: dict[str, Any] = {}
        with client.stream(
            "POST", "/admin/api/projections/orders/rebuild", headers={"accept": "text/event-stream"}
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kinds.append(line.removeprefix("event: "))
                elif line.startswith("data: "):
                    last = msgspec.json.decode(line.removeprefix("data: "))
        assert kinds[-1] == "done" and last["checkpoint"] == position
        # Whichever worker answers, the views are the rebuilt ones and keep up.
        placed = order(client, order_id="o2")
        view = ok(client.get("/api/orders/o2", params={"min_position": placed["position"]}))
        assert view["order_id"] == "o2"


def test_the_overview_shows_the_cache_in_front_of_the_views(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    settings = shop_settings(tmp_path, cache=f"{redis_url}?namespace={namespace}")
    with running(shop_api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        caught_up(client, shop(client))
        overview = ok(client.get("/admin/api/overview"))
        assert overview["cache"]["status"] == "UP"
        assert overview["status"] == "UP"
