"""A shop workload for the PostgreSQL read store and worker tests, and a way to compare views.

Every command the shop has, with ids chosen so that every projection and collection holds
something: users (renamed, new emails, logins), products, orders (shipped, cancelled),
posts and comments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg

from twofold.application.app import App
from twofold.domain.messages import Command
from twofold.examples import shop

PRODUCTS = 12


def shop_commands(orders: int, *, users: int = 40) -> list[list[Command]]:
    """Commands in waves: each wave may run concurrently, waves run in order."""
    people: list[Command] = [
        shop.CreateUser(user_id=f"u-{i}", email=f"user{i}@example.com", name=f"User {i}")
        for i in range(users)
    ]
    catalogue: list[Command] = [
        shop.AddProduct(product_id=f"p-{k}", name=f"Product {k}", price=Decimal(f"{k + 1}.25"))
        for k in range(PRODUCTS)
    ]
    created: list[Command] = [
        shop.CreateOrder(
            order_id=f"o-{i}",
            customer_id=f"u-{i % users}",
            items=tuple(
                shop.OrderItem(
                    product_id=f"p-{(i + k) % PRODUCTS}",
                    quantity=1 + k,
                    price=Decimal(f"{(i + k) % PRODUCTS + 1}.25"),
                )
                for k in range(1 + i % 3)
            ),
        )
        for i in range(orders)
    ]
    changed: list[Command] = []
    for i in range(orders):
        if i % 3 == 0:
            changed.append(
                shop.ShipOrder(
                    order_id=f"o-{i}", shipping_address=f"{i} Main St", tracking_number=f"T{i}"
                )
            )
        elif i % 3 == 1:
            changed.append(shop.CancelOrder(order_id=f"o-{i}", reason="changed my mind"))
    blog: list[Command] = [
        shop.CreatePost(post_id=f"b-{j}", author_id=f"u-{j % users}", title=f"T{j}", body="...")
        for j in range(max(1, orders // 10))
    ]
    comments: list[Command] = [
        shop.AddComment(
            post_id=f"b-{j % len(blog)}",
            comment_id=f"c-{j}",
            author_id=f"u-{(j * 7) % users}",
            text=f"comment {j}",
        )
        for j in range(max(1, orders // 5))
    ]
    people_changes: list[Command] = []
    for i in range(users):
        people_changes.append(shop.RecordLogin(user_id=f"u-{i}"))
        if i % 4 == 0:
            people_changes.append(shop.RenameUser(user_id=f"u-{i}", name=f"User {i} Lee"))
        if i % 5 == 0:
            people_changes.append(shop.ChangeEmail(user_id=f"u-{i}", new_email=f"x{i}@corp.org"))
    return [people + catalogue, created + blog, changed + comments + people_changes]


async def populate_shop(app: App, orders: int, *, clients: int = 16) -> int:
    """Dispatch the workload, ``clients`` commands at a time; return the last position."""
    last = 0
    for wave in shop_commands(orders):

        async def client(pending: Iterator[Command]) -> int:
            top = 0
            for command in pending:
                result = await app.dispatch(command)
                top = max(top, result.position)
            return top

        pending = iter(wave)
        last = max(last, *await asyncio.gather(*(client(pending) for _ in range(clients))))
    return last


def collection_names(app: App) -> list[str]:
    return sorted(c.name for runner in app.runners.values() for c in runner.projection.collections)


def snapshot_views(url: str, schema: str, collections: Sequence[str]) -> dict[str, Any]:
    """Every document of every collection (active copy), by collection then key."""
    with psycopg.connect(url) as conn:
        return {
            name: dict(conn.execute(f'SELECT key, doc FROM "{schema}".v_{name} ORDER BY key'))
            for name in collections
        }
