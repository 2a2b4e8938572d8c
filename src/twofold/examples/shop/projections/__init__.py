"""The shop's projections: each owns its collections and reads nothing but the log.

=============  =======================================================================
projection     collections (indexes)
=============  =======================================================================
``users``      ``user_profiles`` (email_domain, created_at)
``products``   ``products``
``orders``     ``orders`` (customer_id, status, created_at), ``customer_statistics``,
               ``order_customers``, ``order_products``
``blog``       ``posts`` (author_id, created_at), ``blog_authors``,
               ``post_commenters`` (user_id)
=============  =======================================================================

Each parks an event that fails after its retries, with the rest of its stream, so one
poison event never stops a view for every other stream (``App.dead_letters`` lists them,
``retry_dead_letters`` and ``skip_dead_letters`` release them; ``/health`` says DEGRADED).
"""

from __future__ import annotations

from twofold import Projection
from twofold.examples.shop.projections.blog import BlogProjection
from twofold.examples.shop.projections.orders import OrderProjection
from twofold.examples.shop.projections.products import ProductProjection
from twofold.examples.shop.projections.users import UserProjection

__all__ = [
    "PROJECTIONS",
    "BlogProjection",
    "OrderProjection",
    "ProductProjection",
    "UserProjection",
]

PROJECTIONS: tuple[type[Projection], ...] = (
    UserProjection,
    ProductProjection,
    OrderProjection,
    BlogProjection,
)
"""Every projection class of the shop; construct each with no arguments."""
