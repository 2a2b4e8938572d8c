from __future__ import annotations

from decimal import Decimal

import pytest

from tests.unit.shop.shop_fakes import FakeShop
from twofold.examples.shop import AddProduct, CreateUser


@pytest.fixture
def app() -> FakeShop:
    return FakeShop()


@pytest.fixture
async def stocked(app: FakeShop) -> FakeShop:
    """Two customers (ann, bob) and two products (pen 1.50, book 12.00)."""
    await app.dispatch(CreateUser(user_id="ann", email="ann@example.com", name="Ann"))
    await app.dispatch(CreateUser(user_id="bob", email="bob@example.org", name="Bob"))
    await app.dispatch(AddProduct(product_id="pen", name="Pen", price=Decimal("1.50")))
    await app.dispatch(AddProduct(product_id="book", name="Book", price=Decimal("12.00")))
    return app
