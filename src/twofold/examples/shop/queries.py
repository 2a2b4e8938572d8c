"""The shop's queries (questions) and their handlers, each reading one projection's views.

Listings page from 1 with at most ``MAX_PAGE_SIZE`` items, in a stable order (a tie on
the sort field is broken by the document key), and report the total count of matches.
A query with bad paging or filters raises ValidationError naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from twofold import Query, QueryBus, ViewReader
from twofold import SortBy as SortTerm
from twofold.errors import ValidationError
from twofold.examples.shop.answers import (
    CustomerStatistics,
    OrderView,
    Page,
    PostView,
    ProductView,
    UserView,
    from_document,
    from_json,
)
from twofold.examples.shop.domain.orders import ORDER_STATUSES
from twofold.examples.shop.domain.rules import BLANKS_CLASS
from twofold.examples.shop.projections._documents import timestamp
from twofold.examples.shop.projections.blog import POSTS
from twofold.examples.shop.projections.orders import (
    CUSTOMER_STATISTICS,
    ORDER_CUSTOMERS,
    ORDERS,
)
from twofold.examples.shop.projections.products import PRODUCTS
from twofold.examples.shop.projections.users import USER_PROFILES

__all__ = [
    "DOMAIN_PATTERN",
    "MAX_PAGE_SIZE",
    "GetCustomerStatistics",
    "GetOrder",
    "GetPost",
    "GetProduct",
    "GetUser",
    "ListUsersByEmailDomain",
    "SearchOrders",
    "domain_problem",
    "register_queries",
]

T = TypeVar("T")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
DOMAIN_PATTERN = rf"^[^\x00]*[^\x00@{BLANKS_CLASS}][^\x00]*$"
"""An e-mail domain filter holds a character other than white space and "@"."""
_DOMAIN_CHARACTER = re.compile(rf"[^@{BLANKS_CLASS}]")


# -- queries ----------------------------------------------------------------------------


class GetUser(Query[UserView | None]):
    user_id: str


class ListUsersByEmailDomain(Query[Page[UserView]]):
    """Users whose e-mail is at ``domain`` (case-insensitive), oldest account first."""

    domain: str
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE


class GetProduct(Query[ProductView | None]):
    product_id: str


class GetOrder(Query[OrderView | None]):
    order_id: str


class SearchOrders(Query[Page[OrderView]]):
    """Orders matching every filter given, newest first; the date range is inclusive and
    compares ``created_at`` (aware datetimes only)."""

    customer_id: str | None = None
    status: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE


class GetCustomerStatistics(Query[CustomerStatistics | None]):
    """None when no such customer is known; zeros for a customer without orders."""

    customer_id: str


class GetPost(Query[PostView | None]):
    post_id: str


# -- handlers ---------------------------------------------------------------------------


def domain_problem(domain: str) -> str | None:
    """What is wrong with an e-mail domain filter (``DOMAIN_PATTERN`` in words), or None."""
    if _DOMAIN_CHARACTER.search(domain) is None:
        return "must hold a domain, such as example.com"
    return None


async def get_user(query: GetUser, views: ViewReader) -> UserView | None:
    return await _get(views, USER_PROFILES, query.user_id, UserView)


async def list_users_by_email_domain(
    query: ListUsersByEmailDomain, views: ViewReader
) -> Page[UserView]:
    problem = domain_problem(query.domain)
    if problem is not None:
        raise ValidationError({"domain": problem})
    domain = query.domain.strip().removeprefix("@").lower()
    return await _page(
        views,
        USER_PROFILES,
        UserView,
        where={"email_domain": domain},
        between=None,
        order_by=[("created_at", "asc"), ("key", "asc")],
        page=query.page,
        size=query.size,
    )


async def get_product(query: GetProduct, views: ViewReader) -> ProductView | None:
    return await _get(views, PRODUCTS, query.product_id, ProductView)


async def get_order(query: GetOrder, views: ViewReader) -> OrderView | None:
    return await _get(views, ORDERS, query.order_id, OrderView)


async def get_order_json(query: GetOrder, views: ViewReader) -> bytes | None:
    """``get_order`` as JSON: the stored document is the answer (tests/unit/shop checks)."""
    return await views.get_json(ORDERS, query.order_id)


async def search_orders(query: SearchOrders, views: ViewReader) -> Page[OrderView]:
    problems: dict[str, str] = {}
    where: dict[str, Any] = {}
    if query.customer_id is not None:
        where["customer_id"] = query.customer_id
    if query.status is not None:
        if query.status in ORDER_STATUSES:
            where["status"] = query.status
        else:
            problems["status"] = f"must be one of {', '.join(ORDER_STATUSES)}"
    bounds: dict[str, str | None] = {"from_date": None, "to_date": None}
    for field, moment in (("from_date", query.from_date), ("to_date", query.to_date)):
        if moment is None:
            continue
        if moment.utcoffset() is None:
            problems[field] = "must carry a time zone (for example 2024-05-01T00:00:00Z)"
            continue
        try:
            bounds[field] = timestamp(moment)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first instant in UTC
            problems[field] = "must lie within the years 1 to 9999 once moved to UTC"
    if problems:
        raise ValidationError(problems)
    between = None
    if query.from_date is not None or query.to_date is not None:
        between = {"created_at": (bounds["from_date"], bounds["to_date"])}
    return await _page(
        views,
        ORDERS,
        OrderView,
        where=where,
        between=between,
        order_by=[("created_at", "desc"), ("key", "desc")],
        page=query.page,
        size=query.size,
    )


async def get_customer_statistics(
    query: GetCustomerStatistics, views: ViewReader
) -> CustomerStatistics | None:
    statistics = await views.get(CUSTOMER_STATISTICS, query.customer_id)
    if statistics is not None:
        return from_document(statistics, CustomerStatistics)
    if await views.get(ORDER_CUSTOMERS, query.customer_id) is None:
        return None
    return CustomerStatistics(
        customer_id=query.customer_id,
        total_orders=0,
        total_amount=Decimal("0.00"),
        average_order_amount=Decimal("0.00"),
        orders_by_status=dict.fromkeys(ORDER_STATUSES, 0),
    )


async def get_post(query: GetPost, views: ViewReader) -> PostView | None:
    return await _get(views, POSTS, query.post_id, PostView)


def register_queries(bus: QueryBus) -> None:
    """Route every shop query to its handler, with the projection it reads."""
    bus.register(GetUser, get_user, reads=("users",))
    bus.register(ListUsersByEmailDomain, list_users_by_email_domain, reads=("users",))
    bus.register(GetProduct, get_product, reads=("products",))
    bus.register(GetOrder, get_order, reads=("orders",), json=get_order_json)
    bus.register(SearchOrders, search_orders, reads=("orders",))
    bus.register(GetCustomerStatistics, get_customer_statistics, reads=("orders",))
    bus.register(GetPost, get_post, reads=("blog",))


# -- helpers ----------------------------------------------------------------------------


async def _get(views: ViewReader, collection: str, key: str, answer: type[T]) -> T | None:
    data = await views.get_json(collection, key)
    return from_json(data, answer) if data is not None else None


async def _page(
    views: ViewReader,
    collection: str,
    answer: type[T],
    *,
    where: Mapping[str, Any],
    between: Mapping[str, tuple[Any, Any]] | None,
    order_by: Sequence[SortTerm],
    page: int,
    size: int,
) -> Page[T]:
    problems: dict[str, str] = {}
    if page < 1:
        problems["page"] = "must be 1 or more"
    if not 1 <= size <= MAX_PAGE_SIZE:
        problems["size"] = f"must be between 1 and {MAX_PAGE_SIZE}"
    if problems:
        raise ValidationError(problems)
    documents = await views.find(
        collection,
        where=where,
        between=between,
        order_by=order_by,
        limit=size,
        offset=(page - 1) * size,
    )
    total = await views.count(collection, where=where, between=between)
    items = tuple(from_document(document, answer) for document in documents)
    return Page(items=items, total=total, page=page, size=size)
