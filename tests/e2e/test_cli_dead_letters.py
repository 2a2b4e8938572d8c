"""A poison event parked by a running `twofold serve`, seen from the command line, retried
in vain, then skipped: the projection runs on and the service is UP again. On a real SQLite
folder and a real PostgreSQL schema."""

from __future__ import annotations

import httpx

from tests.e2e.cli_helpers import Stores, cli, cli_json, one_line_failure, wait_health
from tests.e2e.poison import append_to, poison_order
from tests.e2e.processes import serving
from tests.e2e.shop_client import ok, order, product, user


def test_a_parked_poison_event_is_seen_and_skipped_from_the_command_line(
    cli_stores: Stores,
) -> None:
    with (
        serving([], cwd=cli_stores.folder, env=cli_stores.env()) as (url, _),
        httpx.Client(base_url=url) as client,
    ):
        user(client)
        product(client)
        cancelled = append_to(cli_stores.events, "Order-o9", poison_order("o9"))
        created = cancelled - 1
        placed = order(client, order_id="o1")
        ok(client.get("/api/orders/o1", params={"min_position": placed["position"]}))
        wait_health(client, "orders", lambda p: p["parked"] == 2)

        status = cli_json(cli_stores, "projections", "status")
        orders = next(p for p in status["projections"] if p["name"] == "orders")
        assert (orders["status"], orders["level"], orders["parked"]) == ("running", "DEGRADED", 2)
        assert orders["error"].startswith(f"position {created} (stream 'Order-o9')")
        shown = cli(cli_stores, "projections", "status")
        assert "DEGRADED" in shown.stdout and "InvalidOperation" in shown.stdout

        letters = cli_json(cli_stores, "dead-letters", "list", "orders")["dead_letters"]
        assert [(d["stream_id"], d["stream_version"], d["position"]) for d in letters] == [
            ("Order-o9", 1, created),
            ("Order-o9", 2, cancelled),
        ]
        assert [d["type"] for d in letters] == ["OrderCreated", "OrderCancelled"]
        assert cli_json(cli_stores, "dead-letters", "list") == {"dead_letters": letters}
        listed = cli(cli_stores, "dead-letters", "list")
        assert (
            listed.returncode == 0 and "Order-o9" in listed.stdout and "2 parked" in listed.stdout
        )

        one = cli_json(cli_stores, "dead-letters", "show", "orders", str(created))
        assert one["event"]["data"]["order_id"] == "o9" and one["event"]["type"] == "OrderCreated"
        assert "InvalidOperation" in one["error"] and one["event"]["metadata"] == {}
        nothing = cli(cli_stores, "dead-letters", "show", "orders", str(placed["position"]))
        assert "no event of projection 'orders' is parked" in one_line_failure(
            nothing, 2, "twofold dead-letters show"
        )

        retried = cli(cli_stores, "dead-letters", "retry", "orders", "--stream", "Order-o9")
        assert "still fail" in one_line_failure(retried, 1, "twofold dead-letters retry")
        assert "0 events of stream Order-o9 of orders applied; 2 still parked" in retried.stdout
        assert wait_health(client, "orders", lambda p: p["parked"] == 2)["status"] == "DEGRADED"

        first = cli_json(cli_stores, "dead-letters", "skip", "orders", "--position", str(created))
        assert (first["done"], first["still_parked"]) == (1, 1)
        rest = cli(cli_stores, "dead-letters", "skip", "orders", "--stream", "Order-o9")
        assert rest.returncode == 0, rest.stderr
        assert "1 event of stream Order-o9 of orders dropped; 0 still parked" in rest.stdout

        health = wait_health(client, "orders", lambda p: p["parked"] == 0)
        assert health["status"] == "UP", health
        later = order(client, order_id="o2")
        answer = client.get("/api/orders/o2", params={"min_position": later["position"]})
        assert ok(answer)["order_id"] == "o2"
        assert cli_json(cli_stores, "dead-letters", "list", "orders") == {"dead_letters": []}
