"""Which positions are final: the visibility horizon that keeps readers from missing events.

The problem. Positions come from a sequence, and transactions commit in any order: writer A
takes position 7, writer B takes 8 and commits first. A reader that saw 8 and moved its
checkpoint past it would never see 7 (DESIGN 2, promise 4).

The choice. Writers run in parallel (nothing serialises them, so their commits share WAL
flushes), and readers only read up to a *horizon* below which every position is final:
committed or never to appear. A table lock would also work but puts every commit, fsync
included, in one queue, capping throughput for all processes together; a high-water mark
with a timeout (Marten) skips an event whose writer is merely slow.

The argument. Every append transaction takes its xid before its first position
(``append_batch`` calls ``pg_current_xact_id()`` first). ``read_horizon()`` then returns:

  m  the sequence's last value, read first;
  N  the next xid to be assigned, read after m (``age(xid)`` counts from it when the caller
     has no xid, so no xid is consumed);
  o  the oldest running xid (``pg_snapshot_xmin``), read after N.

Claim: once any ``o >= N`` is observed (in this call or a later one), every position
<= m is final. A writer holding position p <= m took p before m was read, hence its xid
before that, hence its xid < N. ``o >= N`` means no xid below N is running, so that writer
has committed or rolled back; a snapshot taken afterwards shows all of its events or none.

Why not the snapshot's xmax. ``pg_snapshot_xmax`` is "latest *completed* xid + 1": xids
assigned later but still running are not listed in ``xip``. With xids 101 and 102 running
and nothing newer completed, the snapshot reads ``101:101:``, so ``xmin >= xmax`` holds
while both writers are still open. Waiting for nextXid avoids that hole.

Requirements and trade-offs:
- The position sequence has CACHE 1 (the default): a cached range would let a session hand
  out a position <= m long after m was read, with an xid taken later.
- Only transactions that have an xid hold the horizon back; plain reads do not. A long
  *writing* transaction anywhere in the cluster (xids are cluster-wide), or a forgotten
  prepared transaction, delays new events for readers until it ends; appends go on. Readers
  never wait without bound: they return what is confirmed and try again later.
- Confirmed horizons only grow, and are shared by every reader of a store: each is a fact
  about the database, true forever once observed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection, sql

__all__ = ["VisibilityHorizon"]

_MAX_PENDING = 64


class VisibilityHorizon:
    """The highest position known to be final, advanced by ``refresh``."""

    def __init__(
        self,
        schema: sql.Identifier,
        connection: Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]],
    ) -> None:
        self._connection = connection
        self._read = sql.SQL(
            "SELECT last_position, next_xid, oldest_xid FROM {}.read_horizon()"
        ).format(schema)
        self._xmin = sql.SQL("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        self.confirmed = 0
        # Candidates (m, N) not yet confirmed; both grow along the deque.
        self._pending: deque[tuple[int, int]] = deque()
        # Set when a wait ran out: a long transaction holds the horizon, and waiting on
        # every read would only slow readers down. Cleared when the horizon moves.
        self._stuck = False

    @property
    def settled(self) -> bool:
        """True when no candidate waits: the confirmed horizon is as new as it can be."""
        return not self._pending

    async def refresh(self, *, wait: float = 0.0) -> int:
        """Observe the database and return the confirmed horizon.

        With ``wait`` > 0, waits up to that many seconds for the transactions that hold
        positions up to the newest candidate to end (normally one commit's time), so a
        caller sees what was committed before it asked. After a wait ran out, later calls
        do not wait until the horizon moves again.
        """
        async with self._connection() as conn:
            cur = await conn.execute(self._read)
            row = await cur.fetchone()
        assert row is not None
        last_position, next_xid, oldest_xid = row
        self._offer(last_position, next_xid)
        self._confirm(oldest_xid)
        if wait <= 0 or not self._pending or self._stuck:
            return self.confirmed
        target = self._pending[-1][0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.0005
        while self.confirmed < target and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
            async with self._connection() as conn:
                cur = await conn.execute(self._xmin)
                xmin_row = await cur.fetchone()
            assert xmin_row is not None
            self._confirm(xmin_row[0])
        self._stuck = self.confirmed < target
        return self.confirmed

    def _offer(self, position: int, next_xid: int) -> None:
        if position <= self.confirmed:
            return
        if self._pending and self._pending[-1][0] >= position:
            # An older candidate for the same position is confirmed no later than this one.
            return
        if len(self._pending) >= _MAX_PENDING:
            # The newer candidate covers more positions; it only confirms a little later.
            self._pending.pop()
        self._pending.append((position, next_xid))

    def _confirm(self, oldest_xid: int) -> None:
        while self._pending and self._pending[0][1] <= oldest_xid:
            position, _ = self._pending.popleft()
            self.confirmed = max(self.confirmed, position)
            self._stuck = False
