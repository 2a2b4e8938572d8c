"""Property: any sequence of shop commands gives the same views live and after a rebuild.

Commands are drawn at random, valid or not (unknown ids, shipping a cancelled order...);
refused ones record nothing. The views built live, while commands run, must equal, document
for document, the views rebuilt from the whole log.
"""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twofold import App, Command, Settings, TwofoldError, bootstrap
from twofold.examples import shop

USERS = ["u1", "u2", "u3"]
PRODUCTS = ["p1", "p2"]
ORDERS = ["o1", "o2", "o3", "o4"]
POSTS = ["b1", "b2"]

ids = st.sampled_from
names = st.sampled_from(["Ann", "Bob", "Cy", "Dee"])
emails = st.sampled_from(["a@x.example", "b@y.example", "c@x.example", "bad-email"])
money = st.decimals(min_value=Decimal("0"), max_value=Decimal("99.99"), places=2)
items = st.lists(
    st.builds(
        shop.OrderItem,
        product_id=ids([*PRODUCTS, "nope"]),
        quantity=st.integers(min_value=0, max_value=5),
        price=money,
    ),
    min_size=0,
    max_size=3,
).map(tuple)

commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(shop.CreateUser, user_id=ids(USERS), email=emails, name=names),
    st.builds(shop.ChangeEmail, user_id=ids(USERS), new_email=emails),
    st.builds(shop.RenameUser, user_id=ids(USERS), name=names),
    st.builds(shop.RecordLogin, user_id=ids(USERS)),
    st.builds(shop.AddProduct, product_id=ids(PRODUCTS), name=names, price=money),
    st.builds(shop.CreateOrder, order_id=ids(ORDERS), customer_id=ids(USERS), items=items),
    st.builds(
        shop.ShipOrder,
        order_id=ids(ORDERS),
        shipping_address=st.just("1 Main St"),
        tracking_number=st.just("T-1"),
    ),
    st.builds(shop.CancelOrder, order_id=ids(ORDERS), reason=st.just("changed mind")),
    st.builds(shop.CreatePost, post_id=ids(POSTS), author_id=ids(USERS), title=names, body=names),
    st.builds(
        shop.AddComment,
        post_id=ids(POSTS),
        comment_id=st.sampled_from(["c1", "c2", "c3"]),
        author_id=ids(USERS),
        text=names,
    ),
)


async def snapshot_views(app: App) -> dict[str, list[dict[str, Any]]]:
    views: dict[str, list[dict[str, Any]]] = {}
    for projection in shop.PROJECTIONS:
        for collection in projection.collections:
            views[collection.name] = await app.read_store.find(
                collection.name, order_by=[("key", "asc")]
            )
    return views


async def scenario(sequence: list[Command]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = Settings(
            event_store=f"sqlite:///{folder}/events.db", read_store=f"sqlite:///{folder}/v.db"
        )
        async with await bootstrap(shop.SERVICE, config) as app:
            accepted = 0
            for command in sequence:
                try:
                    await app.dispatch(command)
                    accepted += 1
                except TwofoldError:
                    pass
            await app.wait_for_projections()
            live = await snapshot_views(app)
            for name in app.runners:
                await app.rebuild(name)
            rebuilt = await snapshot_views(app)
            assert rebuilt == live
            if accepted:
                assert any(live.values())


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(commands, min_size=1, max_size=40))
def test_views_built_live_equal_views_rebuilt(sequence: list[Command]) -> None:
    asyncio.run(scenario(sequence))
