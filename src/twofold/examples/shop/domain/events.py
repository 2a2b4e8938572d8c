"""Every event the shop records, named in the past tense.

Each event carries what the views need (``OrderCreated`` holds the customer, the items and
the total), so projections never read the write side. Money is ``Decimal``; ``type_name``
is fixed so classes can be renamed without orphaning stored events.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from twofold import Event

__all__ = [
    "EVENTS",
    "CommentAdded",
    "OrderCancelled",
    "OrderCreated",
    "OrderItem",
    "OrderShipped",
    "PostCreated",
    "ProductAdded",
    "UserCreated",
    "UserEmailChanged",
    "UserLoggedIn",
    "UserRenamed",
]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OrderItem:
    """One line of an order: a product, how many, and the unit price agreed."""

    product_id: str
    quantity: int
    price: Decimal


# -- users ------------------------------------------------------------------------------


class UserCreated(Event, type_name="UserCreated", version=1):
    user_id: str
    email: str
    name: str


class UserEmailChanged(Event, type_name="UserEmailChanged", version=1):
    user_id: str
    old_email: str
    new_email: str


class UserRenamed(Event, type_name="UserRenamed", version=1):
    user_id: str
    old_name: str
    new_name: str


class UserLoggedIn(Event, type_name="UserLoggedIn", version=1):
    user_id: str


# -- products ---------------------------------------------------------------------------


class ProductAdded(Event, type_name="ProductAdded", version=1):
    product_id: str
    name: str
    price: Decimal


# -- orders -----------------------------------------------------------------------------


class OrderCreated(Event, type_name="OrderCreated", version=1):
    order_id: str
    customer_id: str
    items: tuple[OrderItem, ...]
    total_amount: Decimal


class OrderShipped(Event, type_name="OrderShipped", version=1):
    order_id: str
    shipping_address: str
    tracking_number: str


class OrderCancelled(Event, type_name="OrderCancelled", version=1):
    order_id: str
    reason: str


# -- blog -------------------------------------------------------------------------------


class PostCreated(Event, type_name="PostCreated", version=1):
    post_id: str
    author_id: str
    title: str
    body: str


class CommentAdded(Event, type_name="CommentAdded", version=1):
    post_id: str
    comment_id: str
    author_id: str
    text: str


EVENTS: tuple[type[Event], ...] = (
    UserCreated,
    UserEmailChanged,
    UserRenamed,
    UserLoggedIn,
    ProductAdded,
    OrderCreated,
    OrderShipped,
    OrderCancelled,
    PostCreated,
    CommentAdded,
)
"""Every event class of the shop, for registering with a codec."""
