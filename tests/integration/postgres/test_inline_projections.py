"""Single-database mode: projections applied inside the append's own transaction.

With ``TWOFOLD_INLINE_PROJECTIONS`` naming a projection and both stores in one PostgreSQL
schema, a query right after a command sees the command's effect without waiting; a handler
that fails takes its append down with it; rebuilds stay blue/green and miss nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.postgres._shop_load import collection_names, populate_shop, snapshot_views
from tests.integration.postgres.conftest import drop_schema
from tests.unit import bank
from twofold.application.app import App, Service
from twofold.application.inline import InlineRunner
from twofold.application.projections import InlineProjectionError
from twofold.application.views import ViewTransaction
from twofold.bootstrap import bootstrap
from twofold.errors import ConfigurationError, ValidationError
from twofold.examples import shop
from twofold.settings import Settings

pytestmark = pytest.mark.postgres


def inline_settings(postgres_url: str, schema: str, names: str, **options: str) -> Settings:
    url = f"{postgres_url}?schema={schema}"
    env = {"TWOFOLD_EVENT_STORE": url, "TWOFOLD_READ_STORE": url}
    return Settings.from_env({**env, "TWOFOLD_INLINE_PROJECTIONS": names}, **options)


async def test_a_query_right_after_a_command_sees_the_write(
    postgres_url: str, pg_schema: str
) -> None:
    app = await bootstrap(shop.SERVICE, inline_settings(postgres_url, pg_schema, "orders"))
    async with app:
        assert isinstance(app.runner("orders"), InlineRunner)
        assert not isinstance(app.runner("users"), InlineRunner)
        await app.dispatch(shop.CreateUser(user_id="u-1", email="a@example.com", name="Ann"))
        await app.dispatch(shop.AddProduct(product_id="p-1", name="Pen", price=Decimal("2.50")))
        for i in range(20):
            await app.dispatch(
                shop.CreateOrder(
                    order_id=f"o-{i}",
                    customer_id="u-1",
                    items=(shop.OrderItem(product_id="p-1", quantity=2, price=Decimal("2.50")),),
                )
            )
            order = await app.ask(shop.GetOrder(order_id=f"o-{i}"))  # no min_position
            assert order is not None and order.status == "CREATED"
            assert order.customer_name == "Ann" and order.items[0].product_name == "Pen"
            await app.dispatch(
                shop.ShipOrder(
                    order_id=f"o-{i}", shipping_address="1 Main St", tracking_number="T1"
                )
            )
            shipped = await app.ask(shop.GetOrder(order_id=f"o-{i}"))
            assert shipped is not None and shipped.status == "SHIPPED"
        statistics = await app.ask(shop.GetCustomerStatistics(customer_id="u-1"))
        assert statistics is not None and statistics.total_orders == 20
        # The checkpoint moves with every append, so the health check sees no lag.
        state = await app.read_store.state("orders")
        assert state.checkpoint == await app.event_store.head_position()


class FragileBalances(bank.Balances):
    """The bank's balances, except that a deposit of 13 fails."""

    def _deposited(self, event: bank.MoneyDeposited, tx: ViewTransaction) -> None:
        if event.amount == 13:
            raise RuntimeError("13 is unlucky")
        super()._deposited(event, tx)


FRAGILE_BANK = Service(name="bank", register=bank.register, projections=(FragileBalances,))


async def test_a_failing_inline_handler_records_nothing(postgres_url: str, pg_schema: str) -> None:
    app = await bootstrap(FRAGILE_BANK, inline_settings(postgres_url, pg_schema, "*"))
    async with app:
        for account in ("a", "b", "c"):
            await app.dispatch(bank.OpenAccount(account_id=account, owner=account))
        await app.dispatch(bank.Deposit(account_id="a", amount=Decimal(5)))
        head = await app.event_store.head_position()

        with pytest.raises(InlineProjectionError) as failed:
            await app.dispatch(bank.Deposit(account_id="a", amount=Decimal(13)))
        assert failed.value.projection == "balances" and "unlucky" in str(failed.value)
        assert await app.event_store.head_position() == head
        assert len(await app.event_store.read_stream("Account-a")) == 2
        assert await app.ask(bank.GetBalance(account_id="a")) == 5

        # Appends that share a batch with the failing one are written, and only they.
        outcomes = await asyncio.gather(
            app.dispatch(bank.Deposit(account_id="a", amount=Decimal(1))),
            app.dispatch(bank.Deposit(account_id="b", amount=Decimal(13))),
            app.dispatch(bank.Deposit(account_id="c", amount=Decimal(2))),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], InlineProjectionError)
        assert not isinstance(outcomes[0], BaseException)
        assert not isinstance(outcomes[2], BaseException)
        assert await app.ask(bank.GetBalance(account_id="a")) == 6
        assert await app.ask(bank.GetBalance(account_id="b")) == 0
        assert await app.ask(bank.GetBalance(account_id="c")) == 2
        assert len(await app.event_store.read_stream("Account-b")) == 1


async def test_rebuilding_an_inline_projection_yields_identical_views(
    postgres_url: str, pg_schema: str
) -> None:
    settings = inline_settings(postgres_url, pg_schema, "orders")
    app = await bootstrap(shop.SERVICE, settings)
    other = await bootstrap(shop.SERVICE, settings)  # another process on the same schema
    async with app, other:
        await populate_shop(app, 120)
        await app.wait_for_projections(timeout=30)
        names = [c.name for c in app.runner("orders").projection.collections]
        live = snapshot_views(postgres_url, pg_schema, names)
        assert all(live.values())
        await app.rebuild("orders")
        assert snapshot_views(postgres_url, pg_schema, names) == live

        # A rebuild while both processes append: nothing is missed or applied twice.
        writing = [
            asyncio.create_task(place_orders(app, "late", 60)),
            asyncio.create_task(place_orders(other, "other", 60)),
        ]
        await asyncio.sleep(0.05)
        await app.rebuild("orders")
        await asyncio.gather(*writing)
        during = snapshot_views(postgres_url, pg_schema, names)
        await other.rebuild("orders")
        assert snapshot_views(postgres_url, pg_schema, names) == during
        assert len(during["orders"]) == len(live["orders"]) + 120
        state = await app.read_store.state("orders")
        assert state.checkpoint == await app.event_store.head_position()


async def place_orders(app: App, prefix: str, count: int) -> None:
    for i in range(count):
        await app.dispatch(
            shop.CreateOrder(
                order_id=f"{prefix}-{i}",
                customer_id=f"u-{i % 5}",
                items=(shop.OrderItem(product_id="p-1", quantity=1, price=Decimal("2.25")),),
            )
        )


async def test_inline_and_asynchronous_projections_build_the_same_views(
    postgres_url: str, pg_schema: str
) -> None:
    app = await bootstrap(shop.SERVICE, inline_settings(postgres_url, pg_schema, "*"))
    async with app:
        head = await populate_shop(app, 90)
        names = collection_names(app)
        inline = snapshot_views(postgres_url, pg_schema, names)
        for runner in app.runners.values():
            assert await app.rebuild(runner.name) == head  # by the runner, from the log
        assert snapshot_views(postgres_url, pg_schema, names) == inline


async def test_views_behind_the_log_are_caught_up_before_the_first_inline_append(
    postgres_url: str, pg_schema: str
) -> None:
    settings = inline_settings(postgres_url, pg_schema, "orders", projections="off")
    plain = await bootstrap(
        shop.SERVICE, dataclasses.replace(settings, inline_projections=frozenset())
    )
    async with plain:  # no runner runs: the views stay behind
        await populate_shop(plain, 30)
    app = await bootstrap(shop.SERVICE, settings)
    async with app:
        # o-0 shipped before this process started; o-2 was placed and is cancelled now.
        shipped = await app.ask(shop.GetOrder(order_id="o-0"))
        assert shipped is not None and shipped.status == "SHIPPED"
        await app.dispatch(shop.CancelOrder(order_id="o-2", reason="late"))
        cancelled = await app.ask(shop.GetOrder(order_id="o-2"))
        assert cancelled is not None and cancelled.status == "CANCELLED"
        assert await app.ask(shop.GetOrder(order_id="o-29")) is not None


async def test_stores_that_are_not_one_database_and_schema_are_refused(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    url = f"{postgres_url}?schema={pg_schema}"
    other = f"{pg_schema}_other"
    try:
        mismatched = [
            {"TWOFOLD_EVENT_STORE": url, "TWOFOLD_READ_STORE": f"sqlite:///{tmp_path}/v.db"},
            {"TWOFOLD_EVENT_STORE": "memory://", "TWOFOLD_READ_STORE": url},
            {"TWOFOLD_EVENT_STORE": url, "TWOFOLD_READ_STORE": f"{postgres_url}?schema={other}"},
        ]
        for env in mismatched:
            settings = Settings.from_env({**env, "TWOFOLD_INLINE_PROJECTIONS": "orders"})
            with pytest.raises(ConfigurationError, match="TWOFOLD_READ_STORE"):
                await bootstrap(shop.SERVICE, settings)
        unknown = inline_settings(postgres_url, pg_schema, "orders,invoices")
        with pytest.raises(ConfigurationError, match="invoices"):
            await bootstrap(shop.SERVICE, unknown)
    finally:
        drop_schema(postgres_url, other)


def test_inline_projection_names_are_checked() -> None:
    assert Settings.from_env(
        {"TWOFOLD_INLINE_PROJECTIONS": " orders, users "}
    ).inline_projections == {
        "orders",
        "users",
    }
    assert Settings.from_env({"TWOFOLD_INLINE_PROJECTIONS": "*"}).inline_projections == {"*"}
    assert Settings.from_env({"TWOFOLD_INLINE_PROJECTIONS": ""}).inline_projections == set()
    for bad in ("*,orders", "Orders", "order-views"):
        with pytest.raises(ConfigurationError, match="TWOFOLD_INLINE_PROJECTIONS"):
            Settings.from_env({"TWOFOLD_INLINE_PROJECTIONS": bad})


async def test_an_inline_projection_is_verified_and_not_paused(
    postgres_url: str, pg_schema: str
) -> None:
    app = await bootstrap(shop.SERVICE, inline_settings(postgres_url, pg_schema, "orders"))
    async with app:
        await app.dispatch(shop.CreateUser(user_id="u-1", email="a@example.com", name="Ann"))
        await app.dispatch(shop.AddProduct(product_id="p-1", name="Pen", price=Decimal("2.50")))
        line = shop.OrderItem(product_id="p-1", quantity=2, price=Decimal("2.50"))
        await app.dispatch(shop.CreateOrder(order_id="o-1", customer_id="u-1", items=(line,)))
        [orders] = [r for r in await app.operations.status() if r.name == "orders"]
        assert (orders.inline, orders.status, orders.lag_events) == (True, "running", 0)
        report = await app.operations.verify("orders")
        assert report.consistent and report.projections[0].collections
        for refused in (app.operations.pause, app.operations.retry, app.operations.reset):
            with pytest.raises(ValidationError, match="applied inline"):
                await refused("orders")
        assert (await app.read_store.state("orders")).paused is False
