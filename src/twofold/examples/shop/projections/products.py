"""The ``products`` projection: the catalogue, one document per product."""

from __future__ import annotations

from twofold import Collection, Projection, ViewTransaction, when
from twofold.examples.shop.domain.events import ProductAdded
from twofold.examples.shop.projections._documents import money, recorded_at

__all__ = ["PRODUCTS", "ProductProjection"]

PRODUCTS = "products"


class ProductProjection(Projection):
    """``products``: {product_id, name, price, created_at, updated_at, version}."""

    name = "products"
    on_error = "park"  # a poison event waits in the dead letters; other streams go on
    collections = (Collection(PRODUCTS),)

    @when(ProductAdded)
    def _added(self, event: ProductAdded, tx: ViewTransaction) -> None:
        now = recorded_at(tx)
        tx.put(
            PRODUCTS,
            event.product_id,
            {
                "product_id": event.product_id,
                "name": event.name,
                "price": money(event.price),
                "created_at": now,
                "updated_at": now,
                "version": tx.record.stream_version,
            },
        )
