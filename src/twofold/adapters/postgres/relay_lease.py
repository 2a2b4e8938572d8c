"""The relay's lease on PostgreSQL: a session advisory lock per destination.

The same mechanism as the projections' leases (``projections.leases``):
``pg_try_advisory_lock`` on a key derived from the schema and ``relay:<destination>``,
held by a connection of its own. A process that dies frees it with its session; the others
try again every ``retry_interval`` seconds. The holder checks its connection at that
interval too: when it broke, the lock may be another process's already, so the relay stops
(``lost``) and the process waits for the lease again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from twofold.adapters.postgres.projections.lanes import LeaseLostError
from twofold.adapters.postgres.projections.leases import ProjectionLease

__all__ = ["PostgresRelayLease"]


class PostgresRelayLease:
    """The lease on relaying ``destination`` from the event store in ``schema``."""

    def __init__(
        self, url: str, *, schema: str, destination: str, retry_interval: float = 1.0
    ) -> None:
        self._url = url
        self._schema = schema
        self.destination = destination
        self.retry_interval = retry_interval
        self._lease: ProjectionLease | None = None

    def _new(self) -> ProjectionLease:
        return ProjectionLease(
            self._url, schema=self._schema, projection=f"relay:{self.destination}"
        )

    async def acquire(self) -> None:
        while True:
            lease = self._lease = self._lease or self._new()
            try:
                if await lease.try_acquire():
                    return
            except (psycopg.Error, OSError, LeaseLostError):
                await lease.release()  # the server is away: a new connection next time
                self._lease = None
            await asyncio.sleep(self.retry_interval)

    async def lost(self) -> None:
        lease = self._lease
        assert lease is not None and lease.held, "acquire the lease first"
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                await lease.lane.run(_ping)
            except (LeaseLostError, psycopg.Error, OSError):
                return

    async def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.release()


def _ping(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT 1")
