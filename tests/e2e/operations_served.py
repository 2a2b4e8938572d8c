"""Repairs made from a second process while `twofold serve` (another process) runs the
shop's projections: what the command line does, here through ``Operations``.

Shared by the SQLite run (tests/e2e) and the PostgreSQL run (tests/integration/postgres).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from tests.e2e.poison import append_to, poison_order
from tests.e2e.shop_client import ok, order, product, user
from twofold import App, Settings, bootstrap
from twofold.examples import shop

T = TypeVar("T")
DEADLINE = 30.0
"""Seconds a poll of /health may take before the test fails (a deadline for a broken
mechanism, not a performance bound)."""


def operate(stores: dict[str, str], work: Callable[[App], Awaitable[T]]) -> T:
    """Run ``work`` with an App over the server's stores that runs no projection."""

    async def run() -> T:
        settings = Settings(**stores, projections="off")  # type: ignore[arg-type]
        async with await bootstrap(shop.SERVICE, settings) as app:
            return await work(app)

    return asyncio.run(run())


def projection(client: httpx.Client, name: str) -> dict[str, Any]:
    health = client.get("/health").json()
    found: dict[str, Any] = next(p for p in health["projections"] if p["name"] == name)
    return found


def until_health(client: httpx.Client, check: Callable[[dict[str, Any]], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check(client.get("/health").json()):
        assert time.monotonic() < deadline, f"/health did not show {what} in {DEADLINE}s"
        time.sleep(0.05)


def repair_a_running_server(client: httpx.Client, stores: dict[str, str]) -> None:
    """Poison parked, seen in /health, skipped from this process: the server is UP again;
    then pause/resume, rebuild and verify, each honoured by the server."""
    user(client)
    product(client)
    poisoned = append_to(stores["event_store"], "Order-o9", poison_order("o9"))
    first = order(client, order_id="o1")
    ok(client.get("/api/orders/o1", params={"min_position": first["position"]}))
    orders = projection(client, "orders")
    assert (orders["status"], orders["level"], orders["parked"]) == ("running", "DEGRADED", 2)
    assert client.get("/health").json()["status"] == "DEGRADED"

    async def skip(app: App) -> list[int]:
        letters = await app.operations.dead_letters("orders")
        await app.operations.skip("orders", stream_id="Order-o9")
        return [letter.position for letter in letters]

    assert operate(stores, skip) == [poisoned - 1, poisoned]
    until_health(client, lambda h: h["status"] == "UP", "UP after the skip")
    after = order(client, order_id="o2")
    ok(client.get("/api/orders/o2", params={"min_position": after["position"]}))
    assert projection(client, "orders")["parked"] == 0

    async def pause(app: App) -> bool:
        return await app.operations.pause("orders")

    assert operate(stores, pause) is True  # the server's runner stopped applying
    paused = order(client, order_id="o3")
    assert client.get("/api/orders/o3").status_code == 404
    orders = projection(client, "orders")
    assert (orders["status"], orders["level"], orders["paused"]) == ("paused", "DEGRADED", True)
    assert orders["lag_events"] >= 1

    async def resume(app: App) -> bool:
        return await app.operations.resume("orders")

    assert operate(stores, resume) is True
    ok(client.get("/api/orders/o3", params={"min_position": paused["position"]}))

    async def rebuild_and_verify(app: App) -> tuple[int, bool, list[str]]:
        seen: list[int] = []
        checkpoint = await app.operations.rebuild("orders", lambda done, _: seen.append(done))
        report = await app.operations.verify()
        details = [
            f"{p.summary()} {[(c.name, c.differences) for c in p.collections]}"
            for p in report.projections
            if not p.consistent
        ]
        return checkpoint, report.consistent, details

    checkpoint, consistent, summaries = operate(stores, rebuild_and_verify)
    assert checkpoint >= paused["position"]
    assert consistent, summaries  # the poison parks in the replay too: no divergence
    ok(client.get("/api/orders/o1"))  # served throughout, now from the new copy
    last = order(client, order_id="o4")  # the server writes the new copy
    ok(client.get("/api/orders/o4", params={"min_position": last["position"]}))
    # A rebuild replays the log, skipped events too: the poison parks again in the new copy.
    assert projection(client, "orders")["parked"] == 2
    operate(stores, skip)
    until_health(client, lambda h: h["status"] == "UP", "UP at the end")
