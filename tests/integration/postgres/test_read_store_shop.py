"""The shop end to end on PostgreSQL: events and views in one schema, built through bootstrap.

Views built live equal the views rebuilt from the log, and the views SQLite builds from the
same log; an API process that does not run projections reads its own writes, woken by the
checkpoints another process commits.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.postgres._shop_load import collection_names, populate_shop, snapshot_views
from twofold.application.runner import ProjectionRunner
from twofold.bootstrap import bootstrap
from twofold.examples import shop
from twofold.settings import Settings

pytestmark = pytest.mark.postgres


def pg_settings(postgres_url: str, schema: str, **options: str) -> Settings:
    url = f"{postgres_url}?schema={schema}"
    return Settings(event_store=url, read_store=url, **options)  # type: ignore[arg-type]


async def test_live_views_equal_rebuilt_views_and_sqlites(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    app = await bootstrap(shop.SERVICE, pg_settings(postgres_url, pg_schema))
    async with app:
        head = await populate_shop(app, 300)
        await app.wait_for_projections(head, timeout=30)
        names = collection_names(app)
        live = snapshot_views(postgres_url, pg_schema, names)
        assert all(live.values()), "every collection holds something"
        for name in app.runners:
            assert await app.rebuild(name) == head
        assert snapshot_views(postgres_url, pg_schema, names) == live

        reference = await bootstrap(
            shop.SERVICE,
            Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db"),
        )
        async with reference:
            for runner in app.runners.values():
                await ProjectionRunner(
                    runner.projection,
                    event_store=app.event_store,
                    read_store=reference.read_store,
                    codec=reference.codec,
                ).catch_up()
            for name in names:
                documents = await reference.read_store.find(name, order_by=[("key", "asc")])
                assert documents == list(live[name].values()), name


async def test_an_api_without_projections_reads_its_writes(
    postgres_url: str, pg_schema: str
) -> None:
    worker = await bootstrap(shop.SERVICE, pg_settings(postgres_url, pg_schema))
    api = await bootstrap(shop.SERVICE, pg_settings(postgres_url, pg_schema, projections="off"))
    async with worker, api:
        await api.read_store.watch_checkpoints(api.positions.advance)  # type: ignore[attr-defined]
        await populate_shop(api, 6)
        for i in range(20):
            result = await api.dispatch(
                shop.CreateOrder(
                    order_id=f"ryw-{i}",
                    customer_id="u-1",
                    items=(shop.OrderItem(product_id="p-1", quantity=1, price=Decimal("2.25")),),
                )
            )
            found = await api.ask(shop.GetOrder(order_id=f"ryw-{i}"), min_position=result.position,
                                  timeout=5)  # fmt: skip
            assert found is not None and found.order_id == f"ryw-{i}"
        assert api.positions.position("orders") >= result.position
        await asyncio.sleep(0)
