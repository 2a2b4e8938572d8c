"""Every connection of a process comes from one helper, and its stores share one pool."""

from __future__ import annotations

import asyncio
import os

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from twofold.adapters.postgres import PostgresEventStore, PostgresReadStore
from twofold.adapters.postgres._pool import connect, connect_sync

pytestmark = pytest.mark.postgres


async def test_every_connection_sets_keepalives_and_names_its_process(postgres_url: str) -> None:
    conn = await connect(postgres_url, role="writer")
    sync = connect_sync(postgres_url, role="views-admin")
    try:
        for dsn, role in ((conn.info.dsn, "writer"), (sync.info.dsn, "views-admin")):
            options = conninfo_to_dict(dsn)
            assert options["keepalives"] == "1"
            assert options["keepalives_idle"] == "5"
            assert options["application_name"] == f"twofold {role} pid {os.getpid()}"
    finally:
        await conn.close()
        sync.close()


async def test_a_name_set_in_the_url_is_kept(postgres_url: str) -> None:
    conn = await connect(f"{postgres_url}?application_name=mine", role="writer")
    try:
        cur = await conn.execute("SHOW application_name")
        assert await cur.fetchone() == ("mine",)
    finally:
        await conn.close()


async def test_the_stores_of_a_process_share_one_pool(postgres_url: str, pg_schema: str) -> None:
    events = await PostgresEventStore.open(postgres_url, schema=pg_schema, pool_size=4)
    views = await PostgresReadStore.open(postgres_url, schema=pg_schema, pool_size=4)
    try:
        # Eight concurrent reads, four through each store: the pool has room for four.
        reads = [events.head_position() for _ in range(4)] + [views.states() for _ in range(4)]
        await asyncio.gather(*reads)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            (pooled,) = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (f"twofold pool pid {os.getpid()}",),
            ).fetchone() or (0,)
        assert 1 <= pooled <= 4
    finally:
        await views.close()
        await events.close()
