"""A poison event never stops the shop's views: it is parked with its stream, others go on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from twofold.application.app import App
from twofold.bootstrap import bootstrap
from twofold.examples import shop
from twofold.http.health import check_health
from twofold.records import NO_STREAM, STREAM_EXISTS
from twofold.settings import Settings

# A quantity no view can hold: the customer's average order amount overflows its decimal
# context (decimal.InvalidOperation), as the 10**40 did through the HTTP API.
HUGE = 10**40


def poison_order(order_id: str) -> shop.OrderCreated:
    line = shop.OrderItem(product_id="pen", quantity=HUGE, price=Decimal("1.50"))
    return shop.OrderCreated(
        order_id=order_id, customer_id="ann", items=(line,), total_amount=HUGE * line.price
    )


async def record_poison(app: App, order_id: str = "o9") -> int:
    """Append the events straight to the log, as a write side that let them through would."""
    stream = shop.Order.stream_id_for(order_id)
    await app.event_store.append(
        stream, [app.codec.new_event(poison_order(order_id))], expected_version=NO_STREAM
    )
    cancelled = shop.OrderCancelled(order_id=order_id, reason="too many")
    result = await app.event_store.append(
        stream, [app.codec.new_event(cancelled)], expected_version=STREAM_EXISTS
    )
    return result.position


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    async with await bootstrap(shop.SERVICE, settings) as running:
        await running.dispatch(shop.CreateUser(user_id="ann", email="a@example.com", name="Ann"))
        await running.dispatch(shop.AddProduct(product_id="pen", name="Pen", price=Decimal(1)))
        yield running


async def test_a_poison_order_is_parked_with_its_stream_and_other_orders_go_on(app: App) -> None:
    poisoned = await record_poison(app)
    line = shop.OrderItem(product_id="pen", quantity=2, price=Decimal("1.50"))
    placed = await app.dispatch(shop.CreateOrder(order_id="o1", customer_id="ann", items=(line,)))
    order = await app.ask(shop.GetOrder(order_id="o1"), min_position=placed.position)
    assert order is not None and order.total_amount == Decimal("3.00")
    assert await app.ask(shop.GetOrder(order_id="o9")) is None
    statistics = await app.ask(shop.GetCustomerStatistics(customer_id="ann"))
    assert statistics is not None and statistics.total_orders == 1  # the poison left no trace

    letters = await app.dead_letters()
    assert [(d.projection, d.position) for d in letters] == [
        ("orders", poisoned - 1),
        ("orders", poisoned),
    ]
    assert letters[0].error.startswith("InvalidOperation")
    assert letters[1].error == "an earlier event of this stream is parked"

    health = await check_health(app, threshold=60, runs_projections=True)
    assert health.status == "DEGRADED"
    orders = next(p for p in health.projections if p.name == "orders")
    assert (orders.status, orders.parked) == ("running", 2)
    assert orders.position == placed.position and orders.lag_events == 0
    assert orders.error is not None and "InvalidOperation" in orders.error
    assert all(p.parked == 0 for p in health.projections if p.name != "orders")


async def test_parked_events_are_retried_then_skipped(app: App) -> None:
    poisoned = await record_poison(app)
    await app.wait_for_projections(poisoned)
    # Still poison: retrying keeps the stream parked, whole.
    assert await app.retry_dead_letters("orders") == 0
    assert len(await app.dead_letters("orders")) == 2

    assert await app.skip_dead_letters("orders", stream_id=shop.Order.stream_id_for("o9")) == 2
    assert await app.dead_letters() == []
    health = await check_health(app, threshold=60, runs_projections=True)
    assert health.status == "UP"
    assert all((p.parked, p.error) == (0, None) for p in health.projections)
    # The stream is free again: its next events apply (here, the order as it was meant).
    line = shop.OrderItem(product_id="pen", quantity=1, price=Decimal("1.50"))
    meant = shop.OrderCreated(
        order_id="o9", customer_id="ann", items=(line,), total_amount=Decimal("1.50")
    )
    fixed = await app.event_store.append(
        shop.Order.stream_id_for("o9"),
        [app.codec.new_event(meant)],
        expected_version=STREAM_EXISTS,
    )
    order = await app.ask(shop.GetOrder(order_id="o9"), min_position=fixed.position)
    assert order is not None and order.total_amount == Decimal("1.50")
    assert await app.dead_letters() == []
