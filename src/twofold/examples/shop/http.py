"""The shop's HTTP routes: request bodies and parameters, and the message each one builds.

This is all a service needs to be served by ``twofold serve``: an ``HttpApi`` with one small
function per route. Bodies decode strictly (a mistyped field is 422 naming it); amounts are
decimal strings such as ``"12.50"``; ids a client leaves out are generated.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from twofold.errors import ValidationError
from twofold.examples.shop import (
    MAX_PAGE_SIZE,
    SERVICE,
    AddComment,
    AddProduct,
    CancelOrder,
    ChangeEmail,
    CreateOrder,
    CreatePost,
    CreateUser,
    CustomerStatistics,
    GetCustomerStatistics,
    GetOrder,
    GetPost,
    GetProduct,
    GetUser,
    ListUsersByEmailDomain,
    OrderItem,
    OrderView,
    Page,
    PostView,
    ProductView,
    RecordLogin,
    RenameUser,
    SearchOrders,
    ShipOrder,
    UserView,
)
from twofold.examples.shop.commands import (
    MAX_ADDRESS,
    MAX_COMMENT,
    MAX_NAME,
    MAX_POST_BODY,
    MAX_REASON,
    MAX_TITLE,
    MAX_TRACKING_NUMBER,
)
from twofold.examples.shop.domain.orders import MAX_ITEMS, MAX_QUANTITY
from twofold.examples.shop.domain.rules import (
    EMAIL_PATTERN,
    MAX_EMAIL,
    MAX_PRICE_DIGITS,
    MAX_PRICE_PLACES,
    NOT_BLANK_PATTERN,
    PRICE_PATTERN,
    price_text_problem,
)
from twofold.examples.shop.queries import DOMAIN_PATTERN, domain_problem
from twofold.http import Call, HttpApi, Id

__all__ = ["api", "app"]

api = HttpApi(
    SERVICE,
    title="twofold reference shop",
    version="1.0.0",
    description="Users, products, orders and blog posts, recorded as events and answered "
    "from views. Every command answers its log `position`; pass it to a query as "
    "`min_position` to read your own write.",
)

Money = Annotated[
    str,
    msgspec.Meta(
        description=f'A decimal amount of 0 or more as a string, such as "12.50": at most '
        f"{MAX_PRICE_DIGITS} digits before the point and {MAX_PRICE_PLACES} after",
        examples=["12.50"],
        # Checked by price_text_problem (a msgspec pattern would let "1.00\n" through).
        extra_json_schema={"pattern": PRICE_PATTERN},
    ),
]
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_EMAIL,
        description="An e-mail address such as name@example.com",
        extra_json_schema={"pattern": EMAIL_PATTERN},
    ),
]
PageNumber = Annotated[int, msgspec.Meta(ge=1, le=1_000_000, description="From 1")]
Size = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE_SIZE, description="Items per page")]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY, description="How many, from 1")]


def _text(limit: int) -> msgspec.Meta:
    """Text of 1 to ``limit`` characters with one that is not white space (no NUL: no
    store holds it). The commands check the same rules, with their own messages."""
    return msgspec.Meta(
        min_length=1, max_length=limit, extra_json_schema={"pattern": NOT_BLANK_PATTERN}
    )


Name = Annotated[str, _text(MAX_NAME)]
CACHE = "no-cache"  # a cache may keep an answer, but must revalidate it with its ETag


# -- users ------------------------------------------------------------------------------


class CreateUserBody(msgspec.Struct, kw_only=True):
    email: Email
    name: Name
    user_id: Id | None = None


class ChangeEmailBody(msgspec.Struct):
    new_email: Email


class RenameUserBody(msgspec.Struct):
    name: Name


class UserPath(msgspec.Struct):
    user_id: Id


class UsersByDomain(msgspec.Struct):
    email_domain: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=255, extra_json_schema={"pattern": DOMAIN_PATTERN}),
    ]
    page: PageNumber = 1
    size: Size = 20


@api.command(
    "/api/users", body=CreateUserBody, status=201, location="/api/users/{id}", tags=["users"]
)
def create_user(body: CreateUserBody, call: Call) -> CreateUser:
    """Create a user."""
    return CreateUser(user_id=body.user_id or call.new_id(), email=body.email, name=body.name)


@api.command("/api/users/{user_id}/email", body=ChangeEmailBody, tags=["users"])
def change_email(body: ChangeEmailBody, call: Call) -> ChangeEmail:
    """Change a user's e-mail address."""
    return ChangeEmail(user_id=call.path["user_id"], new_email=body.new_email)


@api.command("/api/users/{user_id}/name", body=RenameUserBody, tags=["users"])
def rename_user(body: RenameUserBody, call: Call) -> RenameUser:
    """Rename a user."""
    return RenameUser(user_id=call.path["user_id"], name=body.name)


@api.command("/api/users/{user_id}/logins", tags=["users"])
def record_login(body: None, call: Call) -> RecordLogin:
    """Record that a user logged in."""
    return RecordLogin(user_id=call.path["user_id"])


@api.query(
    "/api/users/{user_id}",
    params=UserPath,
    response=UserView,
    etag="version",
    cache_control=CACHE,
    tags=["users"],
)
def get_user(params: UserPath, call: Call) -> GetUser:
    """A user's profile and activity."""
    return GetUser(user_id=params.user_id)


@api.query("/api/users", params=UsersByDomain, response=Page[UserView], tags=["users"])
def list_users(params: UsersByDomain, call: Call) -> ListUsersByEmailDomain:
    """Users with an e-mail address at a domain, oldest account first."""
    problem = domain_problem(params.email_domain)
    if problem is not None:
        raise ValidationError({"email_domain": problem})
    return ListUsersByEmailDomain(domain=params.email_domain, page=params.page, size=params.size)


# -- products ---------------------------------------------------------------------------


class AddProductBody(msgspec.Struct, kw_only=True):
    name: Name
    price: Money
    product_id: Id | None = None


class ProductPath(msgspec.Struct):
    product_id: Id


def _price(text: str, field: str) -> Decimal:
    problem = price_text_problem(text)
    if problem is not None:
        raise ValidationError({field: problem})
    return Decimal(text)


@api.command(
    "/api/products",
    body=AddProductBody,
    status=201,
    location="/api/products/{id}",
    tags=["products"],
)
def add_product(body: AddProductBody, call: Call) -> AddProduct:
    """Add a product to the catalogue."""
    product_id = body.product_id or call.new_id()
    return AddProduct(product_id=product_id, name=body.name, price=_price(body.price, "price"))


@api.query(
    "/api/products/{product_id}",
    params=ProductPath,
    response=ProductView,
    etag="version",
    cache_control=CACHE,
    tags=["products"],
)
def get_product(params: ProductPath, call: Call) -> GetProduct:
    """A product."""
    return GetProduct(product_id=params.product_id)


# -- orders -----------------------------------------------------------------------------


class OrderItemBody(msgspec.Struct):
    product_id: Id
    quantity: Quantity
    price: Money


class CreateOrderBody(msgspec.Struct, kw_only=True):
    customer_id: Id
    items: Annotated[list[OrderItemBody], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]
    order_id: Id | None = None


class ShipOrderBody(msgspec.Struct):
    shipping_address: Annotated[str, _text(MAX_ADDRESS)]
    tracking_number: Annotated[str, _text(MAX_TRACKING_NUMBER)]


class CancelOrderBody(msgspec.Struct):
    reason: Annotated[str, _text(MAX_REASON)]


class OrderPath(msgspec.Struct):
    order_id: Id


Status = Literal["CREATED", "SHIPPED", "CANCELLED"]
# A text field, not a datetime: query strings convert loosely, and a bare number would
# otherwise pass as seconds since 1970. ISO 8601 with a time zone only, in the years 0002 to
# 9998, so that every instant stays within Python's years 1 to 9999 when moved to UTC.
_YEAR = "(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
MOMENT_PATTERN = (
    rf"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}(:[0-9]{{2}}(\.[0-9]{{1,6}})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_MOMENT = re.compile(MOMENT_PATTERN.removeprefix("^").removesuffix("$"))
_MOMENT_RULE = "must be ISO 8601 with a time zone, years 0002 to 9998, e.g. 2026-11-22T10:00:00Z"
Moment = Annotated[
    str,
    msgspec.Meta(
        description="ISO 8601 with a time zone, e.g. 2026-11-22T10:00:00Z (years 0002 to 9998)",
        extra_json_schema={"format": "date-time", "pattern": MOMENT_PATTERN},
    ),
]


def _moment(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    if _MOMENT.fullmatch(value) is None:
        raise ValidationError({field: _MOMENT_RULE})
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError({field: f"{value!r} is not a real date and time"}) from None


class OrderSearch(msgspec.Struct, kw_only=True):
    customer_id: Id | None = None
    status: Status | None = None
    from_: Moment | None = msgspec.field(default=None, name="from")
    to: Moment | None = None
    page: PageNumber = 1
    size: Size = 20


@api.command(
    "/api/orders", body=CreateOrderBody, status=201, location="/api/orders/{id}", tags=["orders"]
)
def create_order(body: CreateOrderBody, call: Call) -> CreateOrder:
    """Place an order for an existing customer and existing products."""
    items = tuple(
        OrderItem(
            product_id=item.product_id,
            quantity=item.quantity,
            price=_price(item.price, f"items[{i}].price"),
        )
        for i, item in enumerate(body.items)
    )
    return CreateOrder(
        order_id=body.order_id or call.new_id(), customer_id=body.customer_id, items=items
    )


@api.command("/api/orders/{order_id}/ship", body=ShipOrderBody, tags=["orders"])
def ship_order(body: ShipOrderBody, call: Call) -> ShipOrder:
    """Ship an order (409 if it was cancelled or shipped already)."""
    return ShipOrder(
        order_id=call.path["order_id"],
        shipping_address=body.shipping_address,
        tracking_number=body.tracking_number,
    )


@api.command("/api/orders/{order_id}/cancel", body=CancelOrderBody, tags=["orders"])
def cancel_order(body: CancelOrderBody, call: Call) -> CancelOrder:
    """Cancel an order (409 if it shipped)."""
    return CancelOrder(order_id=call.path["order_id"], reason=body.reason)


@api.query(
    "/api/orders/{order_id}",
    params=OrderPath,
    response=OrderView,
    etag="version",
    cache_control=CACHE,
    tags=["orders"],
)
def get_order(params: OrderPath, call: Call) -> GetOrder:
    """An order, with its lines and its customer's name."""
    return GetOrder(order_id=params.order_id)


@api.query("/api/orders", params=OrderSearch, response=Page[OrderView], tags=["orders"])
def search_orders(params: OrderSearch, call: Call) -> SearchOrders:
    """Orders matching every filter given, newest first; from/to bound created_at."""
    return SearchOrders(
        customer_id=params.customer_id,
        status=params.status,
        from_date=_moment(params.from_, "from"),
        to_date=_moment(params.to, "to"),
        page=params.page,
        size=params.size,
    )


class CustomerPath(msgspec.Struct):
    customer_id: Id


@api.query(
    "/api/customers/{customer_id}/statistics",
    params=CustomerPath,
    response=CustomerStatistics,
    tags=["orders"],
)
def customer_statistics(params: CustomerPath, call: Call) -> GetCustomerStatistics:
    """A customer's order count, amounts and orders by status."""
    return GetCustomerStatistics(customer_id=params.customer_id)


# -- blog -------------------------------------------------------------------------------


class CreatePostBody(msgspec.Struct, kw_only=True):
    author_id: Id
    title: Annotated[str, _text(MAX_TITLE)]
    body: Annotated[str, _text(MAX_POST_BODY)]
    post_id: Id | None = None


class AddCommentBody(msgspec.Struct, kw_only=True):
    author_id: Id
    text: Annotated[str, _text(MAX_COMMENT)]
    comment_id: Id | None = None


class PostPath(msgspec.Struct):
    post_id: Id


@api.command(
    "/api/posts", body=CreatePostBody, status=201, location="/api/posts/{id}", tags=["blog"]
)
def create_post(body: CreatePostBody, call: Call) -> CreatePost:
    """Write a blog post."""
    return CreatePost(
        post_id=body.post_id or call.new_id(),
        author_id=body.author_id,
        title=body.title,
        body=body.body,
    )


def _comment_id(command: AddComment, _: object) -> str:
    return command.comment_id


@api.command(
    "/api/posts/{post_id}/comments",
    body=AddCommentBody,
    status=201,
    id=_comment_id,
    tags=["blog"],
)
def add_comment(body: AddCommentBody, call: Call) -> AddComment:
    """Comment on a post; the answer's id is the comment's."""
    return AddComment(
        post_id=call.path["post_id"],
        comment_id=body.comment_id or call.new_id(),
        author_id=body.author_id,
        text=body.text,
    )


@api.query(
    "/api/posts/{post_id}",
    params=PostPath,
    response=PostView,
    etag="version",
    cache_control=CACHE,
    tags=["blog"],
)
def get_post(params: PostPath, call: Call) -> GetPost:
    """A post with its comments and their authors' names."""
    return GetPost(post_id=params.post_id)


app = api.asgi()
"""The shop as an ASGI app (its stores come from the TWOFOLD_* environment at startup)."""
