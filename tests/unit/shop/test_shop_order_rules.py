from __future__ import annotations

from decimal import Decimal

import pytest

from tests.unit.shop.shop_fakes import FakeShop
from twofold.errors import DomainRuleError, ValidationError
from twofold.examples.shop import (
    CancelOrder,
    CreateOrder,
    Order,
    OrderAlreadyCancelled,
    OrderAlreadyShipped,
    OrderCreated,
    OrderItem,
    ShipOrder,
)


def item(product_id: str = "pen", quantity: int = 1, price: str = "1.50") -> OrderItem:
    return OrderItem(product_id=product_id, quantity=quantity, price=Decimal(price))


def problems(error: ValidationError) -> dict[str, str]:
    return {e.field: e.message for e in error.errors}


def placed(status: str = "CREATED") -> Order:
    order = Order("o1")
    order.place(customer_id="ann", items=[item()])
    if status == "SHIPPED":
        order.ship(shipping_address="1 Main St", tracking_number="T1")
    if status == "CANCELLED":
        order.cancel(reason="changed my mind")
    order.mark_saved(len(order.pending_events))
    return order


def test_create_order_needs_at_least_one_item() -> None:
    with pytest.raises(ValidationError) as caught:
        CreateOrder(order_id="o1", customer_id="ann", items=()).validate()
    assert set(problems(caught.value)) == {"items"}


def test_create_order_names_each_bad_item_field() -> None:
    items = (item(quantity=0), item(price="-1"), item(product_id="", price="NaN"))
    with pytest.raises(ValidationError) as caught:
        CreateOrder(order_id="o1", customer_id="ann", items=items).validate()
    assert set(problems(caught.value)) == {
        "items[0].quantity",
        "items[1].price",
        "items[2].product_id",
        "items[2].price",
    }


def test_a_free_item_is_allowed() -> None:
    CreateOrder(order_id="o1", customer_id="ann", items=(item(price="0"),)).validate()


def test_ship_and_cancel_need_their_details() -> None:
    with pytest.raises(ValidationError) as caught:
        ShipOrder(order_id="o1", shipping_address="", tracking_number=" ").validate()
    assert set(problems(caught.value)) == {"shipping_address", "tracking_number"}
    with pytest.raises(ValidationError) as caught:
        CancelOrder(order_id="o1", reason="").validate()
    assert set(problems(caught.value)) == {"reason"}


def test_placing_records_the_items_and_their_exact_total() -> None:
    order = Order("o1")
    order.place(customer_id="ann", items=[item(quantity=3, price="0.10"), item("book", 1, "12")])
    assert order.pending_events == (
        OrderCreated(
            order_id="o1",
            customer_id="ann",
            items=(item(quantity=3, price="0.10"), item("book", 1, "12")),
            total_amount=Decimal("12.30"),
        ),
    )


def test_the_aggregate_refuses_bad_items_even_unvalidated() -> None:
    with pytest.raises(ValidationError):
        Order("o1").place(customer_id="ann", items=[item(quantity=-2)])


def test_no_ship_after_cancel() -> None:
    with pytest.raises(OrderAlreadyCancelled) as caught:
        placed("CANCELLED").ship(shipping_address="1 Main St", tracking_number="T1")
    assert isinstance(caught.value, DomainRuleError)
    assert caught.value.order_id == "o1"


def test_no_cancel_after_ship() -> None:
    with pytest.raises(OrderAlreadyShipped) as caught:
        placed("SHIPPED").cancel(reason="too late")
    assert caught.value.action == "cancel"


def test_no_second_ship() -> None:
    with pytest.raises(OrderAlreadyShipped) as caught:
        placed("SHIPPED").ship(shipping_address="2 Side St", tracking_number="T2")
    assert caught.value.action == "ship"


def test_cancelling_twice_records_nothing_the_second_time() -> None:
    order = placed("CANCELLED")
    order.cancel(reason="again")
    assert order.pending_events == ()


async def test_create_order_names_unknown_customer_and_products(stocked: FakeShop) -> None:
    command = CreateOrder(
        order_id="o1",
        customer_id="nobody",
        items=(item("pen"), item("ghost"), item("ghost")),
    )
    with pytest.raises(ValidationError) as caught:
        await stocked.dispatch(command)
    assert set(problems(caught.value)) == {
        "customer_id",
        "items[1].product_id",
        "items[2].product_id",
    }
    assert stocked.log.version("Order-o1") == 0


async def test_shipping_a_cancelled_order_records_nothing(stocked: FakeShop) -> None:
    await stocked.dispatch(CreateOrder(order_id="o1", customer_id="ann", items=(item(),)))
    await stocked.dispatch(CancelOrder(order_id="o1", reason="no longer needed"))
    with pytest.raises(OrderAlreadyCancelled):
        await stocked.dispatch(ShipOrder(order_id="o1", shipping_address="A", tracking_number="T"))
    assert stocked.log.version("Order-o1") == 2
