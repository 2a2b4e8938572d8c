"""Views rebuilt from the whole log equal the views built live, event by event."""

from __future__ import annotations

from decimal import Decimal

from tests.unit.shop.shop_fakes import FakeShop
from twofold.examples.shop import (
    AddComment,
    CancelOrder,
    ChangeEmail,
    CreateOrder,
    CreatePost,
    OrderItem,
    RecordLogin,
    RenameUser,
    ShipOrder,
)


async def test_rebuilt_views_equal_live_views(stocked: FakeShop) -> None:
    pen = OrderItem(product_id="pen", quantity=2, price=Decimal("1.50"))
    book = OrderItem(product_id="book", quantity=1, price=Decimal("12.00"))
    for command in [
        RecordLogin(user_id="ann"),
        CreateOrder(order_id="o1", customer_id="ann", items=(pen, book)),
        CreateOrder(order_id="o2", customer_id="bob", items=(book,)),
        ShipOrder(order_id="o1", shipping_address="1 Main St", tracking_number="T1"),
        CancelOrder(order_id="o2", reason="duplicate"),
        CreatePost(post_id="p1", author_id="bob", title="Hello", body="World"),
        AddComment(post_id="p1", comment_id="c1", author_id="ann", text="Nice"),
        RenameUser(user_id="ann", name="Ann Lee"),
        ChangeEmail(user_id="bob", new_email="bob@corp.example"),
    ]:
        await stocked.dispatch(command)

    rebuilt = stocked.rebuilt_views()
    assert rebuilt.documents == stocked.views.documents
    assert all(stocked.views.documents.values()), "every collection holds something"
