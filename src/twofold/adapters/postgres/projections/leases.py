"""Leases: which process runs which projection, held as PostgreSQL advisory locks.

A lease on projection P is a session-level ``pg_try_advisory_lock`` on a key derived from
the schema and P, taken on a connection of its own, the lease's *lane* (``lanes``). The
same connection then commits P's batches (``PostgresReadStore.use_lane``): it is the fence.
A process that lost that connection has lost the lock with it, and cannot write P any
more; the next batch fails with LeaseLostError instead of connecting again.

A process that dies (even by SIGKILL) closes its sockets; the server ends the session and
the lock is free at once. If instead the network goes, the server notices the dead session
only when TCP does (``tcp_keepalives_*`` on the server; the lane sets client keepalives),
and the lock stays held, safely, until then. Waiting processes try again every
``retry_interval``: a takeover takes at most that long after the lock is freed. While the
lock is taken they hold no connection for it: they look in ``pg_locks`` (``TAKEN``, on a
connection of the store's pool) and connect only to try a lock that looks free, and let
the connection go again when another process was quicker.
"""

from __future__ import annotations

from typing import Any

import psycopg

from twofold.adapters.postgres._listener import advisory_holders
from twofold.adapters.postgres.projections.lanes import Lane, LeaseLostError

__all__ = ["TAKEN", "LeaseLostError", "ProjectionLease"]

_TRY = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
# Whether any session holds the lease whose lease_key is %s.
TAKEN = advisory_holders("%s", "0")


def lease_key(schema: str, projection: str) -> str:
    """The text the lock key is hashed from (64 bits; shared with nothing else)."""
    return f"twofold.lease:{schema}:{projection}"


class ProjectionLease:
    """The right to write one projection; ``try_acquire`` until it returns True."""

    def __init__(self, url: str, *, schema: str, projection: str) -> None:
        self.projection = projection
        self._key = lease_key(schema, projection)
        self.lane = Lane(url, name=f"lease-{projection}", fenced_for=projection)
        self.held = False

    @property
    def key(self) -> str:
        """What the lock's key is hashed from (the parameter of ``TAKEN``)."""
        return self._key

    async def try_acquire(self) -> bool:
        """Take the lock if it is free; True once held (it stays held until ``release``).
        When it is not free, the connection tried on is closed: waiting holds none."""
        if not self.held:
            self.held = await self.lane.run(self._try)
            if not self.held:
                await self.lane.disconnect()
        return self.held

    def _try(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(_TRY, (self._key,)).fetchone()
        return bool(row and row[0])

    @property
    def lost(self) -> bool:
        return self.lane.lost

    async def release(self) -> None:
        """Close the lease's connection: the lock goes with it."""
        self.held = False
        await self.lane.close()
