"""What the shop's queries answer: frozen, typed dataclasses built from view documents.

Answers are plain frozen dataclasses (like the messages), so callers get attributes and
types, and msgspec encodes them to JSON as they are. Money comes back as ``Decimal`` and
times as aware UTC ``datetime`` values. ``from_document`` converts a stored document
(decimal strings, ISO text) and ignores fields an answer does not expose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

__all__ = [
    "AuthorView",
    "CommentView",
    "CustomerStatistics",
    "OrderLineView",
    "OrderView",
    "Page",
    "PostView",
    "ProductView",
    "UserActivity",
    "UserView",
    "from_document",
    "from_json",
]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class UserActivity:
    login_count: int
    last_login: datetime | None
    orders_count: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class UserView:
    user_id: str
    email: str
    name: str
    created_at: datetime
    updated_at: datetime
    activity: UserActivity
    version: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ProductView:
    product_id: str
    name: str
    price: Decimal
    created_at: datetime
    updated_at: datetime
    version: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OrderLineView:
    product_id: str
    product_name: str | None
    """The product's name when the order was placed (None if the catalogue lacked it)."""
    quantity: int
    price: Decimal


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OrderView:
    """Seed 003's OrderReadModel."""

    order_id: str
    customer_id: str
    customer_name: str | None
    status: str
    """``CREATED``, ``SHIPPED`` or ``CANCELLED``."""
    items: tuple[OrderLineView, ...]
    total_amount: Decimal
    item_count: int
    """The number of lines (as in seed 003), not the sum of quantities."""
    shipping_address: str | None
    tracking_number: str | None
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class CustomerStatistics:
    """Every order counts in the totals, whatever its status (as in seed 003)."""

    customer_id: str
    total_orders: int
    total_amount: Decimal
    average_order_amount: Decimal
    """Rounded half-even to two decimal places."""
    orders_by_status: Mapping[str, int]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class AuthorView:
    user_id: str
    name: str | None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class CommentView:
    comment_id: str
    text: str
    author: AuthorView
    created_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PostView:
    post_id: str
    title: str
    body: str
    author: AuthorView
    comments: tuple[CommentView, ...]
    comment_count: int
    created_at: datetime
    updated_at: datetime
    version: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Page(Generic[T]):
    """One page of a listing: ``page`` counts from 1; ``total`` counts every match."""

    items: tuple[T, ...]
    total: int
    page: int
    size: int


def from_json(data: bytes, answer: type[T]) -> T:
    """The answer a stored document describes, decoded straight from its JSON."""
    decoder = _DECODERS.get(answer)
    if decoder is None:
        decoder = _DECODERS[answer] = msgspec.json.Decoder(answer)
    result: T = decoder.decode(data)
    return result


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def from_document(document: Mapping[str, Any], answer: type[T]) -> T:
    """The answer a stored document describes."""
    return msgspec.convert(document, answer)
