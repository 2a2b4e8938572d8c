"""The relay on a PostgreSQL event store: its lease is an advisory lock per destination."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from tests.integration.brokers.conftest import nats_server  # noqa: F401 - a fixture
from tests.integration.brokers.servers import NatsServer
from tests.integration.brokers.test_relay_commands import standby_takes_over
from twofold.adapters.postgres import PostgresEventStore
from twofold.adapters.postgres.projections.leases import ProjectionLease, lease_key
from twofold.adapters.postgres.relay_lease import PostgresRelayLease
from twofold.bootstrap import open_publisher

pytestmark = pytest.mark.postgres

DEADLINE = 60.0  # bounds a broken test; no figure depends on it
DESTINATION = "nats://broker:4222/TWOFOLD"


def relay_holder(url: str, schema: str, destination: str) -> int | None:
    """The pid of the process whose connection holds the relay's lease (None: free)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = "
            "(hashtextextended(%s, 0) & x'ffffffffffffffff'::bigint)",
            (lease_key(schema, f"relay:{destination}"),),
        ).fetchone()
    return int(row[0].rsplit(" ", 1)[1]) if row else None


async def test_one_process_holds_a_destination_and_another_takes_it_when_released(
    postgres_url: str, pg_schema: str
) -> None:
    first = PostgresRelayLease(postgres_url, schema=pg_schema, destination=DESTINATION)
    second = PostgresRelayLease(
        postgres_url, schema=pg_schema, destination=DESTINATION, retry_interval=0.05
    )
    await asyncio.wait_for(first.acquire(), DEADLINE)
    try:
        other = ProjectionLease(postgres_url, schema=pg_schema, projection=f"relay:{DESTINATION}")
        assert not await other.try_acquire()  # held: nobody else gets it
        await other.release()
        waiting = asyncio.create_task(second.acquire())
        await first.release()
        await asyncio.wait_for(waiting, DEADLINE)  # freed: the waiting one takes it
    finally:
        await first.release()
        await second.release()


async def test_a_lease_whose_connection_is_killed_is_reported_lost(
    postgres_url: str, pg_schema: str
) -> None:
    lease = PostgresRelayLease(
        postgres_url, schema=pg_schema, destination=DESTINATION, retry_interval=0.05
    )
    await asyncio.wait_for(lease.acquire(), DEADLINE)
    try:
        lost = asyncio.create_task(lease.lost())
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = "
                "'advisory' AND l.granted AND (l.classid::bigint << 32 | l.objid::bigint) = "
                "(hashtextextended(%s, 0) & x'ffffffffffffffff'::bigint)",
                (lease_key(pg_schema, f"relay:{DESTINATION}"),),
            )
        await asyncio.wait_for(lost, DEADLINE)
    finally:
        await lease.release()


@pytest.mark.slow
async def test_a_standby_relay_on_postgresql_takes_over_when_the_active_one_is_killed(
    tmp_path: Path,
    postgres_url: str,
    pg_schema: str,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    url = f"{postgres_url}?schema={pg_schema}"
    destination = open_publisher(nats_server.url).destination
    events = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        await standby_takes_over(
            tmp_path,
            nats_server,
            url,
            events,
            lambda: relay_holder(postgres_url, pg_schema, destination),
        )
    finally:
        await events.close()
