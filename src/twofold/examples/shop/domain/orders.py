"""Orders (seed 003): created with items, then shipped or cancelled, never both.

The life of an order::

    CREATED ──ship──▶ SHIPPED        (cancel or ship again: OrderAlreadyShipped)
       │
       └──cancel──▶ CANCELLED        (ship: OrderAlreadyCancelled; cancel again: no-op)
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from twofold import Aggregate, id_problem, when
from twofold.errors import DomainRuleError, ValidationError
from twofold.examples.shop.domain.events import (
    OrderCancelled,
    OrderCreated,
    OrderItem,
    OrderShipped,
)
from twofold.examples.shop.domain.rules import money_problem

__all__ = [
    "CANCELLED",
    "CREATED",
    "MAX_ITEMS",
    "MAX_QUANTITY",
    "ORDER_STATUSES",
    "SHIPPED",
    "Order",
    "OrderAlreadyCancelled",
    "OrderAlreadyShipped",
    "item_problems",
    "order_total",
]

CREATED = "CREATED"
SHIPPED = "SHIPPED"
CANCELLED = "CANCELLED"
ORDER_STATUSES = (CREATED, SHIPPED, CANCELLED)

MAX_ITEMS = 100
MAX_QUANTITY = 1_000_000
# Totals are exact sums of products; this context only bounds the digits so that every
# process computes the same total whatever its thread's decimal context is.
MONEY = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)


class OrderAlreadyShipped(DomainRuleError):
    """The order has shipped: it can be neither shipped again nor cancelled."""

    code = "order_already_shipped"

    def __init__(self, order_id: str, action: Literal["ship", "cancel"]) -> None:
        self.order_id = order_id
        self.action = action
        super().__init__(
            f"order {order_id!r} has shipped already, so it cannot {action}"
            + (" again" if action == "ship" else "; handle it as a return instead")
        )


class OrderAlreadyCancelled(DomainRuleError):
    """The order was cancelled: it cannot ship."""

    code = "order_cancelled"

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(
            f"order {order_id!r} was cancelled, so it cannot ship; create a new order instead"
        )


def item_problems(items: Sequence[OrderItem]) -> dict[str, str]:
    """What is wrong with an order's items, by field (``items[0].quantity``)."""
    if not items:
        return {"items": "must hold at least one item"}
    if len(items) > MAX_ITEMS:
        return {"items": f"must hold at most {MAX_ITEMS} items"}
    problems: dict[str, str] = {}
    for i, item in enumerate(items):
        problem = id_problem(item.product_id)
        if problem is not None:
            problems[f"items[{i}].product_id"] = problem
        if not 1 <= item.quantity <= MAX_QUANTITY:
            problems[f"items[{i}].quantity"] = f"must be from 1 to {MAX_QUANTITY:,}"
        problem = money_problem(item.price)
        if problem is not None:
            problems[f"items[{i}].price"] = problem
    return problems


def order_total(items: Sequence[OrderItem]) -> Decimal:
    total = Decimal(0)
    for item in items:
        total = MONEY.add(total, MONEY.multiply(item.price, Decimal(item.quantity)))
    return total


class Order(Aggregate):
    customer_id: str = ""
    status: str = ""

    def place(self, *, customer_id: str, items: Sequence[OrderItem]) -> None:
        # The command checked these already; checking again keeps bad input out of the log
        # even when the bus runs without the validation middleware.
        problems = item_problems(items)
        if problems:
            raise ValidationError(problems)
        self.record(
            OrderCreated(
                order_id=self.id,
                customer_id=customer_id,
                items=tuple(items),
                total_amount=order_total(items),
            )
        )

    def ship(self, *, shipping_address: str, tracking_number: str) -> None:
        if self.status == CANCELLED:
            raise OrderAlreadyCancelled(self.id)
        if self.status == SHIPPED:
            raise OrderAlreadyShipped(self.id, "ship")
        self.record(
            OrderShipped(
                order_id=self.id,
                shipping_address=shipping_address,
                tracking_number=tracking_number,
            )
        )

    def cancel(self, *, reason: str) -> None:
        """Cancels the order; cancelling a cancelled order records nothing."""
        if self.status == SHIPPED:
            raise OrderAlreadyShipped(self.id, "cancel")
        if self.status != CANCELLED:
            self.record(OrderCancelled(order_id=self.id, reason=reason))

    @when(OrderCreated)
    def _created(self, event: OrderCreated) -> None:
        self.customer_id = event.customer_id
        self.status = CREATED

    @when(OrderShipped)
    def _shipped(self, event: OrderShipped) -> None:
        self.status = SHIPPED

    @when(OrderCancelled)
    def _cancelled(self, event: OrderCancelled) -> None:
        self.status = CANCELLED
