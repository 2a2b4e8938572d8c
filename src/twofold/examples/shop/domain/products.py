"""Products: a name and a unit price, added to the catalogue once."""

from __future__ import annotations

from decimal import Decimal

from twofold import Aggregate, when
from twofold.examples.shop.domain.events import ProductAdded

__all__ = ["Product"]


class Product(Aggregate):
    name: str = ""
    price: Decimal = Decimal(0)

    def add(self, *, name: str, price: Decimal) -> None:
        self.record(ProductAdded(product_id=self.id, name=name, price=price))

    @when(ProductAdded)
    def _added(self, event: ProductAdded) -> None:
        self.name = event.name
        self.price = event.price
