from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.shop.shop_fakes import FakeShop
from twofold.errors import ValidationError
from twofold.examples.shop import (
    CancelOrder,
    CreateOrder,
    CreateUser,
    CustomerStatistics,
    GetCustomerStatistics,
    GetOrder,
    GetProduct,
    OrderItem,
    OrderLineView,
    ProductView,
    RenameUser,
    SearchOrders,
    ShipOrder,
)
from twofold.examples.shop.projections._documents import money

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def line(product_id: str, quantity: int, price: str) -> OrderItem:
    return OrderItem(product_id=product_id, quantity=quantity, price=Decimal(price))


async def order(
    app: FakeShop, order_id: str, customer_id: str = "ann", amount: str = "1.50"
) -> None:
    items = (line("pen", 1, amount),)
    await app.dispatch(CreateOrder(order_id=order_id, customer_id=customer_id, items=items))


async def test_product_view_keeps_the_price_as_decimal(stocked: FakeShop) -> None:
    assert await stocked.ask(GetProduct(product_id="pen")) == ProductView(
        product_id="pen",
        name="Pen",
        price=Decimal("1.50"),
        created_at=T0 + timedelta(seconds=2),
        updated_at=T0 + timedelta(seconds=2),
        version=1,
    )
    assert stocked.views.all("products")["pen"]["price"] == "1.50"


async def test_order_view_joins_names_and_totals(stocked: FakeShop) -> None:
    items = (line("pen", 3, "1.50"), line("book", 1, "11.99"))
    await stocked.dispatch(CreateOrder(order_id="o1", customer_id="ann", items=items))
    view = await stocked.ask(GetOrder(order_id="o1"))
    assert view is not None
    assert (view.customer_id, view.customer_name, view.status) == ("ann", "Ann", "CREATED")
    assert view.items == (
        OrderLineView(product_id="pen", product_name="Pen", quantity=3, price=Decimal("1.50")),
        OrderLineView(product_id="book", product_name="Book", quantity=1, price=Decimal("11.99")),
    )
    assert (view.total_amount, view.item_count, view.version) == (Decimal("16.49"), 2, 1)
    assert (view.shipping_address, view.tracking_number, view.cancel_reason) == (None,) * 3
    assert view.created_at == view.updated_at == T0 + timedelta(seconds=4)


async def test_shipping_moves_the_order_and_records_where(stocked: FakeShop) -> None:
    await order(stocked, "o1")
    await stocked.dispatch(
        ShipOrder(order_id="o1", shipping_address="1 Main St", tracking_number="TRK1")
    )
    view = await stocked.ask(GetOrder(order_id="o1"))
    assert view is not None
    assert (view.status, view.shipping_address, view.tracking_number) == (
        "SHIPPED",
        "1 Main St",
        "TRK1",
    )
    assert (view.version, view.updated_at - view.created_at) == (2, timedelta(seconds=1))


async def test_cancelling_keeps_the_reason(stocked: FakeShop) -> None:
    await order(stocked, "o1")
    await stocked.dispatch(CancelOrder(order_id="o1", reason="found it cheaper"))
    view = await stocked.ask(GetOrder(order_id="o1"))
    assert view is not None
    assert (view.status, view.cancel_reason) == ("CANCELLED", "found it cheaper")


async def test_customer_name_follows_renames_on_every_order(stocked: FakeShop) -> None:
    await order(stocked, "o1")
    await order(stocked, "o2")
    await order(stocked, "o3", customer_id="bob")
    await stocked.dispatch(RenameUser(user_id="ann", name="Ann Lee"))
    names = {}
    for order_id in ("o1", "o2", "o3"):
        view = await stocked.ask(GetOrder(order_id=order_id))
        assert view is not None
        names[order_id] = (view.customer_name, view.version)
    assert names == {"o1": ("Ann Lee", 1), "o2": ("Ann Lee", 1), "o3": ("Bob", 1)}


async def test_search_filters_by_customer_and_status_newest_first(stocked: FakeShop) -> None:
    for order_id, customer in [("o1", "ann"), ("o2", "bob"), ("o3", "ann"), ("o4", "ann")]:
        await order(stocked, order_id, customer)
    await stocked.dispatch(CancelOrder(order_id="o3", reason="oops"))

    by_ann = await stocked.ask(SearchOrders(customer_id="ann"))
    assert [o.order_id for o in by_ann.items] == ["o4", "o3", "o1"]
    created = await stocked.ask(SearchOrders(customer_id="ann", status="CREATED"))
    assert ([o.order_id for o in created.items], created.total) == (["o4", "o1"], 2)


async def test_search_by_date_range_is_inclusive_and_pages(stocked: FakeShop) -> None:
    for n in range(1, 6):  # o1 at T0+4s ... o5 at T0+8s
        await order(stocked, f"o{n}")
    start, end = T0 + timedelta(seconds=5), T0 + timedelta(seconds=7)
    first = await stocked.ask(SearchOrders(from_date=start, to_date=end, size=2))
    second = await stocked.ask(SearchOrders(from_date=start, to_date=end, page=2, size=2))
    assert [o.order_id for o in first.items] == ["o4", "o3"]
    assert [o.order_id for o in second.items] == ["o2"]
    assert (first.total, second.total, second.page, second.size) == (3, 3, 2, 2)
    later = await stocked.ask(SearchOrders(from_date=T0 + timedelta(seconds=8)))
    assert [o.order_id for o in later.items] == ["o5"]


async def test_search_converts_other_time_zones_to_utc(stocked: FakeShop) -> None:
    await order(stocked, "o1")  # at 09:00:04Z, which is 11:00:04+02:00
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2024, 5, 1, 11, 0, 4, tzinfo=plus_two)
    found = await stocked.ask(SearchOrders(from_date=at, to_date=at))
    assert [o.order_id for o in found.items] == ["o1"]
    before = await stocked.ask(SearchOrders(to_date=at - timedelta(microseconds=1)))
    assert before.total == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (SearchOrders(status="shipped"), "status"),
        (SearchOrders(from_date=datetime(2024, 5, 1)), "from_date"),
        (SearchOrders(size=101), "size"),
        (SearchOrders(page=0), "page"),
    ],
)
async def test_search_refuses_bad_filters(app: FakeShop, query: SearchOrders, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await app.ask(query)
    assert [e.field for e in caught.value.errors] == [field]


async def test_statistics_count_every_order_by_status(stocked: FakeShop) -> None:
    await order(stocked, "o1", amount="10.00")
    await order(stocked, "o2", amount="20.00")
    await order(stocked, "o3", amount="3.33")
    await stocked.dispatch(ShipOrder(order_id="o1", shipping_address="A", tracking_number="T"))
    await stocked.dispatch(CancelOrder(order_id="o2", reason="no"))
    assert await stocked.ask(GetCustomerStatistics(customer_id="ann")) == CustomerStatistics(
        customer_id="ann",
        total_orders=3,
        total_amount=Decimal("33.33"),
        average_order_amount=Decimal("11.11"),
        orders_by_status={"CREATED": 1, "SHIPPED": 1, "CANCELLED": 1},
    )


async def test_average_order_amount_rounds_half_even_to_cents(stocked: FakeShop) -> None:
    await order(stocked, "o1", amount="0.01")
    await order(stocked, "o2", amount="0.04")
    statistics = await stocked.ask(GetCustomerStatistics(customer_id="ann"))
    assert statistics is not None
    assert statistics.average_order_amount == Decimal("0.02")  # 0.025 → 0.02


async def test_statistics_of_a_customer_without_orders_are_zero(stocked: FakeShop) -> None:
    await stocked.dispatch(CreateUser(user_id="cy", email="cy@example.com", name="Cy"))
    statistics = await stocked.ask(GetCustomerStatistics(customer_id="cy"))
    assert statistics is not None
    assert (statistics.total_orders, statistics.total_amount) == (0, Decimal("0"))
    assert await stocked.ask(GetCustomerStatistics(customer_id="ghost")) is None


async def test_order_of_unknown_id_is_none(app: FakeShop) -> None:
    assert await app.ask(GetOrder(order_id="nope")) is None


async def test_an_order_as_stored_json_is_the_typed_answer_encoded(stocked: FakeShop) -> None:
    # GET /api/orders/{id} sends the stored document as it is (QueryBus.ask_json): it must
    # say exactly what the typed answer says, in every state an order goes through.
    encoder = msgspec.json.Encoder(decimal_format="string")

    async def same() -> None:
        for order_id in ("o1", "o2", "o3", "missing"):
            query = GetOrder(order_id=order_id)
            typed = await stocked.ask(query)
            stored = await stocked.ask_json(query)
            if typed is None:
                assert stored is None
                continue
            assert stored is not None
            # The same fields and values; times may differ in form only (stored times keep
            # six fractional digits so that they sort as text; see projections/_documents).
            assert instants(msgspec.json.decode(stored)) == instants(
                msgspec.json.decode(encoder.encode(typed))
            )

    for order_id in ("o1", "o2", "o3"):
        await order(stocked, order_id, amount="2.05")
    await same()
    await stocked.dispatch(RenameUser(user_id="ann", name="Ann B."))
    ship = ShipOrder(order_id="o2", shipping_address="1 Road", tracking_number="T1")
    await stocked.dispatch(ship)
    await stocked.dispatch(CancelOrder(order_id="o3", reason="changed my mind"))
    await same()


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def instants(value: Any) -> Any:
    """``value`` with every ISO 8601 UTC text turned into the instant it names."""
    if isinstance(value, dict):
        return {key: instants(item) for key, item in value.items()}
    if isinstance(value, list):
        return [instants(item) for item in value]
    if isinstance(value, str) and _TIME.fullmatch(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


@given(
    st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from([Decimal("1E+2"), Decimal("1.2E-7"), Decimal("0E-2"), Decimal("-0")])
)
def test_money_is_plain_decimal_text_never_an_exponent(amount: Decimal) -> None:
    text = money(amount)
    assert text == format(amount, "f") and "E" not in text and Decimal(text) == amount
