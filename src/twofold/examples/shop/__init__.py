"""The reference shop (seeds 000, 002, 003): users, products, orders and blog posts.

It uses only twofold's public API, as an application would::

    from twofold.examples import shop

    app = await bootstrap(shop.SERVICE, settings)   # or, piece by piece:
    codec.register(*shop.EVENTS)
    shop.register(command_bus, query_bus)
    runners = [ProjectionRunner(cls(), ...) for cls in shop.PROJECTIONS]

Commands are imperative (``CreateOrder``), events past tense (``OrderCreated``), queries
questions (``GetOrder``); answers are frozen dataclasses (``OrderView``, ``Page``).
"""

from __future__ import annotations

from twofold import CommandBus, QueryBus, Service
from twofold.examples.shop.answers import (
    AuthorView,
    CommentView,
    CustomerStatistics,
    OrderLineView,
    OrderView,
    Page,
    PostView,
    ProductView,
    UserActivity,
    UserView,
)
from twofold.examples.shop.commands import (
    AddComment,
    AddProduct,
    CancelOrder,
    ChangeEmail,
    CreateOrder,
    CreatePost,
    CreateUser,
    RecordLogin,
    RenameUser,
    ShipOrder,
    register_commands,
)
from twofold.examples.shop.domain.blog import CommentAlreadyExists, Post
from twofold.examples.shop.domain.events import (
    EVENTS,
    CommentAdded,
    OrderCancelled,
    OrderCreated,
    OrderItem,
    OrderShipped,
    PostCreated,
    ProductAdded,
    UserCreated,
    UserEmailChanged,
    UserLoggedIn,
    UserRenamed,
)
from twofold.examples.shop.domain.orders import Order, OrderAlreadyCancelled, OrderAlreadyShipped
from twofold.examples.shop.domain.products import Product
from twofold.examples.shop.domain.users import User
from twofold.examples.shop.projections import (
    PROJECTIONS,
    BlogProjection,
    OrderProjection,
    ProductProjection,
    UserProjection,
)
from twofold.examples.shop.queries import (
    MAX_PAGE_SIZE,
    GetCustomerStatistics,
    GetOrder,
    GetPost,
    GetProduct,
    GetUser,
    ListUsersByEmailDomain,
    SearchOrders,
    register_queries,
)

__all__ = [
    "EVENTS",
    "MAX_PAGE_SIZE",
    "PROJECTIONS",
    "SERVICE",
    "AddComment",
    "AddProduct",
    "AuthorView",
    "BlogProjection",
    "CancelOrder",
    "ChangeEmail",
    "CommentAdded",
    "CommentAlreadyExists",
    "CommentView",
    "CreateOrder",
    "CreatePost",
    "CreateUser",
    "CustomerStatistics",
    "GetCustomerStatistics",
    "GetOrder",
    "GetPost",
    "GetProduct",
    "GetUser",
    "ListUsersByEmailDomain",
    "Order",
    "OrderAlreadyCancelled",
    "OrderAlreadyShipped",
    "OrderCancelled",
    "OrderCreated",
    "OrderItem",
    "OrderLineView",
    "OrderProjection",
    "OrderShipped",
    "OrderView",
    "Page",
    "Post",
    "PostCreated",
    "PostView",
    "Product",
    "ProductAdded",
    "ProductProjection",
    "ProductView",
    "RecordLogin",
    "RenameUser",
    "SearchOrders",
    "ShipOrder",
    "User",
    "UserActivity",
    "UserCreated",
    "UserEmailChanged",
    "UserLoggedIn",
    "UserProjection",
    "UserRenamed",
    "UserView",
    "register",
]


def register(commands: CommandBus, queries: QueryBus) -> None:
    """Route every shop command and query to its handler."""
    register_commands(commands)
    register_queries(queries)


SERVICE = Service(name="shop", register=register, projections=PROJECTIONS, events=EVENTS)
"""The shop as a twofold service, for ``twofold.bootstrap``."""
