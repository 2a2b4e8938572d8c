"""The shop's commands (imperative), their input checks, and their handlers.

``validate`` checks each command on its own and lists every field at fault; a handler
then checks what needs the store (the customer, products and authors a command names must
exist) and raises ValidationError naming the field, because an unknown id is bad input.
Ids are explicit: the caller (or the HTTP layer) chooses them.
"""

from __future__ import annotations

from decimal import Decimal

from twofold import Command, CommandBus, CommandContext, id_problem
from twofold.errors import ValidationError
from twofold.examples.shop.domain.blog import Post
from twofold.examples.shop.domain.events import OrderItem
from twofold.examples.shop.domain.orders import Order, item_problems
from twofold.examples.shop.domain.products import Product
from twofold.examples.shop.domain.rules import email_problem, money_problem, text_problem
from twofold.examples.shop.domain.users import User

__all__ = [
    "MAX_ADDRESS",
    "MAX_COMMENT",
    "MAX_NAME",
    "MAX_POST_BODY",
    "MAX_REASON",
    "MAX_TITLE",
    "MAX_TRACKING_NUMBER",
    "AddComment",
    "AddProduct",
    "CancelOrder",
    "ChangeEmail",
    "CreateOrder",
    "CreatePost",
    "CreateUser",
    "RecordLogin",
    "RenameUser",
    "ShipOrder",
    "register_commands",
]

# The longest text each field takes, in characters (ids: twofold's id rule, 1 to 128).
MAX_NAME = 200
MAX_TITLE = 200
MAX_POST_BODY = 100_000
MAX_COMMENT = 10_000
MAX_ADDRESS = 500
MAX_TRACKING_NUMBER = 100
MAX_REASON = 1000


class _Problems(dict[str, str]):
    """Field problems collected while validating; raise them all at once."""

    def check(self, field: str, problem: str | None) -> None:
        if problem is not None:
            self.setdefault(field, problem)

    def check_id(self, field: str, value: str) -> None:
        self.check(field, id_problem(value))

    def raise_any(self) -> None:
        if self:
            raise ValidationError(dict(self))


# -- users ------------------------------------------------------------------------------


class CreateUser(Command):
    user_id: str
    email: str
    name: str

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("user_id", self.user_id)
        problems.check("email", email_problem(self.email))
        problems.check("name", text_problem(self.name, limit=MAX_NAME))
        problems.raise_any()


class ChangeEmail(Command):
    user_id: str
    new_email: str

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("user_id", self.user_id)
        problems.check("new_email", email_problem(self.new_email))
        problems.raise_any()


class RenameUser(Command):
    user_id: str
    name: str

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("user_id", self.user_id)
        problems.check("name", text_problem(self.name, limit=MAX_NAME))
        problems.raise_any()


class RecordLogin(Command):
    user_id: str

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("user_id", self.user_id)
        problems.raise_any()


async def create_user(command: CreateUser, ctx: CommandContext) -> None:
    ctx.create(User, command.user_id).register(email=command.email, name=command.name)


async def change_email(command: ChangeEmail, ctx: CommandContext) -> None:
    (await ctx.load(User, command.user_id)).change_email(command.new_email)


async def rename_user(command: RenameUser, ctx: CommandContext) -> None:
    (await ctx.load(User, command.user_id)).rename(command.name)


async def record_login(command: RecordLogin, ctx: CommandContext) -> None:
    (await ctx.load(User, command.user_id)).record_login()


# -- products ---------------------------------------------------------------------------


class AddProduct(Command):
    product_id: str
    name: str
    price: Decimal

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("product_id", self.product_id)
        problems.check("name", text_problem(self.name, limit=MAX_NAME))
        problems.check("price", money_problem(self.price))
        problems.raise_any()


async def add_product(command: AddProduct, ctx: CommandContext) -> None:
    ctx.create(Product, command.product_id).add(name=command.name, price=command.price)


# -- orders -----------------------------------------------------------------------------


class CreateOrder(Command):
    order_id: str
    customer_id: str
    items: tuple[OrderItem, ...]

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("order_id", self.order_id)
        problems.check_id("customer_id", self.customer_id)
        problems.update(item_problems(self.items))
        problems.raise_any()


class ShipOrder(Command):
    order_id: str
    shipping_address: str
    tracking_number: str

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("order_id", self.order_id)
        problems.check("shipping_address", text_problem(self.shipping_address, limit=MAX_ADDRESS))
        problems.check(
            "tracking_number", text_problem(self.tracking_number, limit=MAX_TRACKING_NUMBER)
        )
        problems.raise_any()


class CancelOrder(Command):
    order_id: str
    reason: str

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("order_id", self.order_id)
        problems.check("reason", text_problem(self.reason, limit=MAX_REASON))
        problems.raise_any()


async def create_order(command: CreateOrder, ctx: CommandContext) -> None:
    problems = _Problems()
    if not await ctx.exists(User, command.customer_id):
        problems.check("customer_id", f"no user {command.customer_id!r} exists; create it first")
    known: dict[str, bool] = {}
    for i, item in enumerate(command.items):
        if item.product_id not in known:
            known[item.product_id] = await ctx.exists(Product, item.product_id)
        if not known[item.product_id]:
            problems.check(
                f"items[{i}].product_id", f"no product {item.product_id!r} exists; add it first"
            )
    problems.raise_any()
    ctx.create(Order, command.order_id).place(customer_id=command.customer_id, items=command.items)


async def ship_order(command: ShipOrder, ctx: CommandContext) -> None:
    order = await ctx.load(Order, command.order_id)
    order.ship(shipping_address=command.shipping_address, tracking_number=command.tracking_number)


async def cancel_order(command: CancelOrder, ctx: CommandContext) -> None:
    (await ctx.load(Order, command.order_id)).cancel(reason=command.reason)


# -- blog -------------------------------------------------------------------------------


class CreatePost(Command):
    post_id: str
    author_id: str
    title: str
    body: str

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("post_id", self.post_id)
        problems.check_id("author_id", self.author_id)
        problems.check("title", text_problem(self.title, limit=MAX_TITLE))
        problems.check("body", text_problem(self.body, limit=MAX_POST_BODY))
        problems.raise_any()


class AddComment(Command):
    post_id: str
    comment_id: str
    author_id: str
    text: str

    def validate(self) -> None:
        problems = _Problems()
        problems.check_id("post_id", self.post_id)
        problems.check_id("comment_id", self.comment_id)
        problems.check_id("author_id", self.author_id)
        problems.check("text", text_problem(self.text, limit=MAX_COMMENT))
        problems.raise_any()


async def _require_author(ctx: CommandContext, author_id: str) -> None:
    if not await ctx.exists(User, author_id):
        raise ValidationError({"author_id": f"no user {author_id!r} exists; create it first"})


async def create_post(command: CreatePost, ctx: CommandContext) -> None:
    await _require_author(ctx, command.author_id)
    post = ctx.create(Post, command.post_id)
    post.write(author_id=command.author_id, title=command.title, body=command.body)


async def add_comment(command: AddComment, ctx: CommandContext) -> None:
    post = await ctx.load(Post, command.post_id)
    await _require_author(ctx, command.author_id)
    post.add_comment(comment_id=command.comment_id, author_id=command.author_id, text=command.text)


def register_commands(bus: CommandBus) -> None:
    """Route every shop command to its handler."""
    bus.register(CreateUser, create_user)
    bus.register(ChangeEmail, change_email)
    bus.register(RenameUser, rename_user)
    bus.register(RecordLogin, record_login)
    bus.register(AddProduct, add_product)
    bus.register(CreateOrder, create_order)
    bus.register(ShipOrder, ship_order)
    bus.register(CancelOrder, cancel_order)
    bus.register(CreatePost, create_post)
    bus.register(AddComment, add_comment)
