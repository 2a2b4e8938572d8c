"""The ``orders`` projection (seed 003): OrderReadModel, and statistics per customer.

Names come from this projection's own lookups, built from the same log (never from the
write side or another projection, whose checkpoint may differ): ``order_customers`` from
UserCreated/UserRenamed, ``order_products`` from ProductAdded. A product's name is copied
into the order when it is placed and stays as it was; a customer's name follows renames.
"""

from __future__ import annotations

from twofold import Collection, Projection, ViewTransaction, when
from twofold.examples.shop.domain.events import (
    OrderCancelled,
    OrderCreated,
    OrderShipped,
    ProductAdded,
    UserCreated,
    UserRenamed,
)
from twofold.examples.shop.domain.orders import CANCELLED, CREATED, ORDER_STATUSES, SHIPPED
from twofold.examples.shop.projections._documents import (
    Document,
    add_money,
    divide_money,
    money,
    recorded_at,
)

__all__ = [
    "CUSTOMER_STATISTICS",
    "ORDERS",
    "ORDER_CUSTOMERS",
    "ORDER_PRODUCTS",
    "OrderProjection",
]

ORDERS = "orders"
CUSTOMER_STATISTICS = "customer_statistics"
ORDER_CUSTOMERS = "order_customers"
ORDER_PRODUCTS = "order_products"


class OrderProjection(Projection):
    """Collections:

    - ``orders``: {order_id, customer_id, customer_name, status, items: [{product_id,
      product_name, quantity, price}], total_amount, item_count, shipping_address,
      tracking_number, cancel_reason, created_at, updated_at, version}; indexes
      customer_id, status, created_at.
    - ``customer_statistics``: {customer_id, total_orders, total_amount,
      average_order_amount, orders_by_status: {CREATED, SHIPPED, CANCELLED}}, keyed by
      customer; every order counts in the totals, whatever its status (as in seed 003).
    - ``order_customers`` {customer_id, name} and ``order_products`` {product_id, name}:
      private lookups.
    """

    name = "orders"
    on_error = "park"  # a poison event waits in the dead letters; other streams go on
    collections = (
        Collection(ORDERS, indexes={"customer_id": str, "status": str, "created_at": str}),
        Collection(CUSTOMER_STATISTICS),
        Collection(ORDER_CUSTOMERS),
        Collection(ORDER_PRODUCTS),
    )

    # -- lookups ------------------------------------------------------------------------

    @when(UserCreated)
    def _customer_created(self, event: UserCreated, tx: ViewTransaction) -> None:
        tx.put(ORDER_CUSTOMERS, event.user_id, {"customer_id": event.user_id, "name": event.name})

    @when(UserRenamed)
    def _customer_renamed(self, event: UserRenamed, tx: ViewTransaction) -> None:
        customer = {"customer_id": event.user_id, "name": event.new_name}
        tx.put(ORDER_CUSTOMERS, event.user_id, customer)
        # A denormalized name is only as good as its updates: rewrite every order of them.
        for order in tx.find(ORDERS, where={"customer_id": event.user_id}):
            order["customer_name"] = event.new_name
            tx.put(ORDERS, order["order_id"], order)

    @when(ProductAdded)
    def _product_added(self, event: ProductAdded, tx: ViewTransaction) -> None:
        tx.put(
            ORDER_PRODUCTS, event.product_id, {"product_id": event.product_id, "name": event.name}
        )

    # -- orders -------------------------------------------------------------------------

    @when(OrderCreated)
    def _created(self, event: OrderCreated, tx: ViewTransaction) -> None:
        now = recorded_at(tx)
        customer = tx.get(ORDER_CUSTOMERS, event.customer_id)
        tx.put(
            ORDERS,
            event.order_id,
            {
                "order_id": event.order_id,
                "customer_id": event.customer_id,
                "customer_name": customer["name"] if customer is not None else None,
                "status": CREATED,
                "items": [
                    {
                        "product_id": item.product_id,
                        "product_name": _product_name(tx, item.product_id),
                        "quantity": item.quantity,
                        "price": money(item.price),
                    }
                    for item in event.items
                ],
                "total_amount": money(event.total_amount),
                "item_count": len(event.items),
                "shipping_address": None,
                "tracking_number": None,
                "cancel_reason": None,
                "created_at": now,
                "updated_at": now,
                "version": tx.record.stream_version,
            },
        )
        statistics = tx.get(CUSTOMER_STATISTICS, event.customer_id) or _no_orders(event.customer_id)
        statistics["total_orders"] += 1
        statistics["total_amount"] = add_money(statistics["total_amount"], event.total_amount)
        statistics["average_order_amount"] = divide_money(
            statistics["total_amount"], statistics["total_orders"]
        )
        statistics["orders_by_status"][CREATED] += 1
        tx.put(CUSTOMER_STATISTICS, event.customer_id, statistics)

    @when(OrderShipped)
    def _shipped(self, event: OrderShipped, tx: ViewTransaction) -> None:
        order = _move(tx, event.order_id, SHIPPED)
        if order is not None:
            order["shipping_address"] = event.shipping_address
            order["tracking_number"] = event.tracking_number
            tx.put(ORDERS, event.order_id, order)

    @when(OrderCancelled)
    def _cancelled(self, event: OrderCancelled, tx: ViewTransaction) -> None:
        order = _move(tx, event.order_id, CANCELLED)
        if order is not None:
            order["cancel_reason"] = event.reason
            tx.put(ORDERS, event.order_id, order)


def _product_name(tx: ViewTransaction, product_id: str) -> str | None:
    product = tx.get(ORDER_PRODUCTS, product_id)
    return product["name"] if product is not None else None


def _no_orders(customer_id: str) -> Document:
    return {
        "customer_id": customer_id,
        "total_orders": 0,
        "total_amount": "0.00",
        "average_order_amount": "0.00",
        "orders_by_status": dict.fromkeys(ORDER_STATUSES, 0),
    }


def _move(tx: ViewTransaction, order_id: str, status: str) -> Document | None:
    """The order moved to ``status`` (stamped with this event), its statistics updated."""
    order = tx.get(ORDERS, order_id)
    if order is None:
        return None
    statistics = tx.get(CUSTOMER_STATISTICS, order["customer_id"])
    if statistics is not None:
        by_status = statistics["orders_by_status"]
        by_status[order["status"]] -= 1
        by_status[status] += 1
        tx.put(CUSTOMER_STATISTICS, order["customer_id"], statistics)
    order["status"] = status
    order["updated_at"] = recorded_at(tx)
    order["version"] = tx.record.stream_version
    return order
