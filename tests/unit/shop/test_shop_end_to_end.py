"""The shop through twofold.bootstrap: real buses, event store, runners and SQLite views."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from twofold.application.app import App
from twofold.bootstrap import bootstrap
from twofold.errors import ValidationError
from twofold.examples import shop
from twofold.settings import Settings


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    async with await bootstrap(shop.SERVICE, settings) as running:
        yield running


async def test_an_order_is_readable_right_after_it_is_written(app: App) -> None:
    await app.dispatch(shop.CreateUser(user_id="ann", email="ann@example.com", name="Ann"))
    await app.dispatch(shop.AddProduct(product_id="pen", name="Pen", price=Decimal("1.50")))
    line = shop.OrderItem(product_id="pen", quantity=2, price=Decimal("1.50"))
    placed = await app.dispatch(shop.CreateOrder(order_id="o1", customer_id="ann", items=(line,)))

    order = await app.ask(shop.GetOrder(order_id="o1"), min_position=placed.position)
    assert order is not None
    assert (order.customer_name, order.items[0].product_name) == ("Ann", "Pen")
    assert (order.total_amount, order.status, order.version) == (Decimal("3.00"), "CREATED", 1)

    renamed = await app.dispatch(shop.RenameUser(user_id="ann", name="Ann Lee"))
    shipped = await app.dispatch(
        shop.ShipOrder(order_id="o1", shipping_address="1 Main St", tracking_number="T1")
    )
    position = max(renamed.position, shipped.position)
    page = await app.ask(shop.SearchOrders(customer_id="ann"), min_position=position)
    assert [(o.order_id, o.customer_name, o.status) for o in page.items] == [
        ("o1", "Ann Lee", "SHIPPED")
    ]
    statistics = await app.ask(shop.GetCustomerStatistics(customer_id="ann"))
    assert statistics is not None
    assert statistics.orders_by_status == {"CREATED": 0, "SHIPPED": 1, "CANCELLED": 0}
    user = await app.ask(shop.GetUser(user_id="ann"), min_position=position)
    assert user is not None
    assert (user.name, user.activity.orders_count) == ("Ann Lee", 1)


async def test_domain_listing_and_posts_read_from_sqlite(app: App) -> None:
    for n in range(3):
        await app.dispatch(shop.CreateUser(user_id=f"u{n}", email=f"u{n}@Example.com", name="U"))
    await app.dispatch(shop.CreatePost(post_id="p1", author_id="u0", title="Hi", body="There"))
    done = await app.dispatch(
        shop.AddComment(post_id="p1", comment_id="c1", author_id="u1", text="Hello")
    )
    await app.wait_for_projections(done.position)

    listed = await app.ask(shop.ListUsersByEmailDomain(domain="example.com", page=2, size=2))
    assert ([u.user_id for u in listed.items], listed.total) == (["u2"], 3)
    post = await app.ask(shop.GetPost(post_id="p1"))
    assert post is not None
    assert (post.author.user_id, post.comments[0].author.user_id) == ("u0", "u1")


async def test_invalid_commands_store_nothing(app: App) -> None:
    with pytest.raises(ValidationError):
        await app.dispatch(shop.CreateOrder(order_id="o1", customer_id="ghost", items=()))
    assert await app.event_store.head_position() == 0


async def test_rebuilt_views_answer_like_the_live_ones(app: App) -> None:
    await app.dispatch(shop.CreateUser(user_id="ann", email="ann@example.com", name="Ann"))
    await app.dispatch(shop.AddProduct(product_id="pen", name="Pen", price=Decimal("0.10")))
    line = shop.OrderItem(product_id="pen", quantity=3, price=Decimal("0.10"))
    done = await app.dispatch(shop.CreateOrder(order_id="o1", customer_id="ann", items=(line,)))
    await app.wait_for_projections(done.position)
    live = await app.ask(shop.GetOrder(order_id="o1"))

    await app.rebuild("orders")
    assert await app.ask(shop.GetOrder(order_id="o1")) == live
