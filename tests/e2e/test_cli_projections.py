"""`twofold projections`, `streams` and `verify` as processes, against a running `twofold
serve` on a real SQLite folder and a real PostgreSQL schema: the server keeps serving while
the command line looks, rebuilds, pauses, resumes and resets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cli_helpers import (
    Stores,
    cli,
    cli_json,
    one_line_failure,
    postgres_stores,
    wait_health,
)
from tests.e2e.processes import serving
from tests.e2e.shop_client import ok, order, product, user

PROJECTIONS = {"users", "products", "orders", "blog"}


def caught_up(client: httpx.Client, position: int) -> None:
    for name in PROJECTIONS:
        wait_health(client, name, lambda p: p["position"] >= position)


def test_status_streams_and_verify_read_a_running_server(cli_stores: Stores) -> None:
    with (
        serving([], cwd=cli_stores.folder, env=cli_stores.env()) as (url, _),
        httpx.Client(base_url=url, headers={"X-Correlation-Id": "cli-test-1"}) as client,
    ):
        user(client)
        product(client)
        placed = order(client, order_id="o1")
        caught_up(client, placed["position"])

        status = cli_json(cli_stores, "projections", "status")
        assert status["head_position"] == placed["position"]
        assert {p["name"] for p in status["projections"]} == PROJECTIONS
        for report in status["projections"]:
            assert (report["status"], report["level"]) == ("running", "UP"), report
            assert (report["position"], report["lag_events"], report["parked"]) == (
                placed["position"], 0, 0
            )  # fmt: skip
        shown = cli(cli_stores, "projections", "status")
        assert shown.returncode == 0 and all(name in shown.stdout for name in PROJECTIONS)
        assert f"head position {placed['position']}" in shown.stdout

        first = cli_json(cli_stores, "streams", "list", "--limit", "2")
        assert [s["stream_id"] for s in first["streams"]] == ["Order-o1", "Product-p1"]
        assert first["next_after"] == "Product-p1"
        rest = cli_json(cli_stores, "streams", "list", "--after", first["next_after"])
        assert rest == {
            "streams": [{"stream_id": "User-u1", "version": 1, "last_position": 1}],
            "next_after": None,
        }

        events = cli_json(cli_stores, "streams", "show", "Order-o1")
        (created,) = events["events"]
        assert (created["type"], created["stream_version"]) == ("OrderCreated", 1)
        assert created["position"] == placed["position"]
        assert created["data"]["order_id"] == "o1" and created["data"]["customer_id"] == "u1"
        assert created["metadata"]["correlation_id"] == "cli-test-1"
        assert events["next_from_version"] is None
        page = cli(cli_stores, "streams", "show", "Order-o1")
        assert page.returncode == 0 and "OrderCreated" in page.stdout and '"o1"' in page.stdout

        report = cli_json(cli_stores, "verify")
        assert {p["name"] for p in report["projections"]} == PROJECTIONS
        assert all(
            p["consistent"] and p["position"] == placed["position"] for p in report["projections"]
        )
        clean = cli(cli_stores, "verify", "orders")
        assert clean.returncode == 0 and "consistent" in clean.stdout, clean.stderr


def test_a_rebuild_from_the_command_line_switches_a_running_server(cli_stores: Stores) -> None:
    with (
        serving([], cwd=cli_stores.folder, env=cli_stores.env()) as (url, _),
        httpx.Client(base_url=url) as client,
    ):
        user(client)
        product(client)
        placed = order(client, order_id="o1")
        caught_up(client, placed["position"])

        rebuilt = cli(cli_stores, "projections", "rebuild", "orders")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert f"up to position {placed['position']}" in rebuilt.stdout
        # The progress bar: events done of total, the rate, the time left.
        bar = f"{placed['position']}/{placed['position']} events"
        assert bar in rebuilt.stderr and "events/s" in rebuilt.stderr, rebuilt.stderr
        assert re.search(r"elapsed, (\d+:\d\d:\d\d|-:--:--) left", rebuilt.stderr), rebuilt.stderr

        # The server reads the new copy, and applies to it what comes next.
        ok(client.get("/api/orders/o1"))
        later = order(client, order_id="o2")
        answer = client.get("/api/orders/o2", params={"min_position": later["position"]})
        assert ok(answer)["order_id"] == "o2"

        every = cli_json(cli_stores, "projections", "rebuild", "--all")
        assert sorted(r["name"] for r in every["rebuilt"]) == sorted(PROJECTIONS)
        assert all(r["position"] == later["position"] for r in every["rebuilt"])
        wait_health(client, "orders", lambda p: p["status"] == "running")
        assert cli_json(cli_stores, "verify")["projections"][0]["consistent"] is True


def test_pause_resume_and_reset_are_honoured_by_the_running_server(cli_stores: Stores) -> None:
    with (
        serving([], cwd=cli_stores.folder, env=cli_stores.env()) as (url, _),
        httpx.Client(base_url=url) as client,
    ):
        first = user(client)
        caught_up(client, first["position"])

        paused = cli(cli_stores, "projections", "pause", "users")
        assert paused.returncode == 0 and "paused users" in paused.stdout, paused.stderr
        wait_health(client, "users", lambda p: p["status"] == "paused")
        renamed = ok(client.post("/api/users/u1/name", json={"name": "Bea"}))
        # The other projections go on; users stays where it was paused.
        added = product(client)
        ok(client.get("/api/products/p1", params={"min_position": added["position"]}))
        status = cli_json(cli_stores, "projections", "status")
        users: dict[str, Any] = next(p for p in status["projections"] if p["name"] == "users")
        assert users["paused"] is True and users["level"] == "DEGRADED"
        assert users["position"] == first["position"] and users["lag_events"] == 2
        assert ok(client.get("/api/users/u1"))["name"] == "Ann"

        resumed = cli(cli_stores, "projections", "resume", "users")
        assert resumed.returncode == 0 and "resumed users" in resumed.stdout, resumed.stderr
        answer = client.get("/api/users/u1", params={"min_position": renamed["position"]})
        assert ok(answer)["name"] == "Bea"

        reset = cli_json(cli_stores, "projections", "reset", "users")
        assert reset == {"projection": "users", "done": "reset", "confirmed": None}
        wait_health(client, "users", lambda p: p["position"] == added["position"])
        assert ok(client.get("/api/users/u1"))["name"] == "Bea"


def test_verify_finds_a_tampered_a_missing_and_an_extra_document(cli_stores: Stores) -> None:
    with (
        serving([], cwd=cli_stores.folder, env=cli_stores.env()) as (url, _),
        httpx.Client(base_url=url) as client,
    ):
        user(client)
        user(client, "u2", "Bob")
        placed = product(client)
        caught_up(client, placed["position"])

    def rename(document: dict[str, Any]) -> None:
        document["name"] = "Mallory"

    cli_stores.update_document("v_user_profiles_g1", "u1", rename)
    cli_stores.execute("DELETE FROM v_user_profiles_g1 WHERE key = ?", "u2")
    cli_stores.insert_document("v_products_g1", "p9", {"product_id": "p9", "name": "Ghost"})
    checked = cli(cli_stores, "verify")
    line = one_line_failure(checked, 1, "twofold verify")
    assert "users diverges" in line and "products diverges" in line
    assert "1 missing" in line and "1 extra" in line and "1 different" in line
    assert 'user_profiles/u1: name: live "Mallory", replay "Ann"' in checked.stdout
    assert "user_profiles/u2: missing" in checked.stdout
    assert "products/p9: extra" in checked.stdout


@pytest.fixture
def pg_stores(tmp_path: Path) -> Iterator[Stores]:
    with postgres_stores(tmp_path) as stores:
        yield stores


@pytest.mark.postgres
def test_status_shows_a_retrying_projection_with_its_attempts_and_error(
    pg_stores: Stores,
) -> None:
    with (
        serving([], cwd=pg_stores.folder, env=pg_stores.env()) as (url, _),
        httpx.Client(base_url=url) as client,
    ):
        first = user(client)
        caught_up(client, first["position"])
        # The store refuses the users view's next commit for a reason of its own.
        pg_stores.execute(
            "ALTER TABLE v_user_profiles_g1 ADD CONSTRAINT no_bea CHECK (doc->>'name' <> 'Bea')"
        )
        ok(client.post("/api/users/u1/name", json={"name": "Bea"}))
        wait_health(client, "users", lambda p: p["status"] == "retrying" and p["attempts"] >= 2)

        shown = cli(pg_stores, "projections", "status")
        assert shown.returncode == 0, shown.stderr
        note = next(line for line in shown.stdout.splitlines() if line.startswith("users: "))
        assert re.fullmatch(r"users: retrying \(attempt \d+\): CheckViolation: .*no_bea.*", note)
        status = cli_json(pg_stores, "projections", "status")
        users = next(p for p in status["projections"] if p["name"] == "users")
        assert (users["status"], users["level"]) == ("retrying", "DEGRADED")
        assert users["attempts"] >= 2 and users["error"].startswith("CheckViolation")
        pg_stores.execute("ALTER TABLE v_user_profiles_g1 DROP CONSTRAINT no_bea")
        wait_health(client, "users", lambda p: p["status"] == "running")
