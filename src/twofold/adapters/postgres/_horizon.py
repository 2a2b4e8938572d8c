"""Which positions are final: the visibility horizon that keeps readers from missing events.

The problem. Positions come from a sequence, and transactions commit in any order: writer A
takes position 7, writer B takes 8 and commits first. A reader that saw 8 and moved its
checkpoint past it would never see 7 (DESIGN 2, promise 4).

The choice. Writers run in parallel (nothing serialises them, so their commits share WAL
flushes), and readers only read up to a *horizon* below which every position is final:
committed or never to appear. A table lock would also work but puts every commit, fsync
included, in one queue, capping throughput for all processes together; a high-water mark
with a timeout (Marten) skips an event whose writer is merely slow.

Appenders announce themselves. Before its first position, every transaction that appends
to a schema takes a shared transaction-scoped advisory lock keyed by ``(K, its xid mod
2^32)`` (``announcement``): K is 31 bits of a hash of the schema's name, and the xid is
assigned by the same call. The lock is in the server's lock table (``pg_locks``) from then
until the transaction has ended: PostgreSQL releases a transaction's locks only after its
commit is visible to new snapshots. Only appenders take it, so a reader waits for nothing
else: not for a long transaction in another database (xids are cluster-wide), nor for one
in the same database that writes anything but events, nor for appends to another schema.

The argument. ``read_append_horizon()`` returns:

  m  the sequence's last value, read first;
  N  the next xid to be assigned, read after m (``age(xid)`` counts from it when the caller
     has no xid, so no xid is consumed);
  o  an xid below which no appender to this schema is running, observed after N: the
     oldest running xid of the whole server when that is already >= N (no lock scan
     needed), else the oldest xid among the announced appenders of this schema
     (``pg_locks``, this database, key K; N itself when there is none), whichever is
     greater (each is a bound on its own).

Claim: once any ``o >= N`` is observed (in this call or a later one), every position
<= m is final. A writer holding position p <= m took p before m was read, hence its xid
and its announcement before that: its xid is < N, and its lock stays in ``pg_locks`` until
it has ended. ``o >= N`` means no announced appender with an xid below N is left, so that
writer has committed or rolled back; a snapshot taken afterwards shows all of its events or
none. The xid in the key has 32 bits: a running xid is within 2^31 of N (PostgreSQL's
wraparound protection), so the difference to N's low bits, taken as a signed 32-bit number,
gives the full xid. Another lock on the same key (a hash collision, or a user's lock) only
makes readers wait longer, never miss an event.

Why not the snapshot's xmax. ``pg_snapshot_xmax`` is "latest *completed* xid + 1": xids
assigned later but still running are not listed. With xids 101 and 102 running and nothing
newer completed, the snapshot reads ``101:101:``, so it would call both writers done while
they are still open. Waiting for nextXid avoids that hole.

Requirements and trade-offs:
- The position sequence has CACHE 1 (the default): a cached range would let a session hand
  out a position <= m long after m was read, with an xid taken later.
- Every statement that takes a position announces first (``_single``, ``append_batch()``);
  so does any code of a user's that appends to the table directly, or readers may pass its
  events. Processes of a twofold older than migration 3 do not announce: stop them before
  processes of this version read (the old ``read_horizon()`` stays, so old readers stay
  correct meanwhile).
- A long *appending* transaction (or a forgotten prepared one) still delays new events for
  readers until it ends; appends go on. Readers never wait without bound: they return what
  is confirmed and try again later.
- Confirmed horizons only grow, and are shared by every reader of a store: each is a fact
  about the database, true forever once observed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.abc import AdaptContext

__all__ = ["VisibilityHorizon", "announcement", "appender_key"]

_MAX_PENDING = 64
# The second half of the key: the xid's low 32 bits as an int4 (pg_locks.objid shows them
# as the unsigned number). Taking the xid here gives the transaction one before anything else.
_ANNOUNCE = (
    "pg_advisory_xact_lock_shared({key},"
    " (((pg_current_xact_id()::text::bigint + 2147483648) & 4294967295) - 2147483648)::integer)"
)


def appender_key(schema: sql.Identifier, context: AdaptContext | None = None) -> int:
    """K: the first half of the lock that announces an appender to ``schema``; 31 bits of
    a hash of the quoted name, so it reads the same as an int4 and as pg_locks' oid."""
    name = schema.as_string(context).encode()
    digest = hashlib.blake2b(b"twofold.append:" + name, digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF


def announcement(schema: sql.Identifier, context: AdaptContext | None = None) -> sql.Composed:
    """The SQL expression (of type void) by which a transaction announces that it appends
    to ``schema``. Every statement that takes a position evaluates it first."""
    return sql.SQL(_ANNOUNCE).format(key=sql.Literal(appender_key(schema, context)))


class VisibilityHorizon:
    """The highest position known to be final, advanced by ``refresh``."""

    def __init__(
        self,
        schema: sql.Identifier,
        connection: Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]],
    ) -> None:
        self._connection = connection
        self._read = sql.SQL(
            "SELECT last_position, next_xid, oldest_xid FROM {}.read_append_horizon()"
        ).format(schema)
        self.confirmed = 0
        # Candidates (m, N) not yet confirmed; both grow along the deque.
        self._pending: deque[tuple[int, int]] = deque()
        # Set when a wait ran out: a long append holds the horizon, and waiting on every
        # read would only slow readers down. Cleared when the horizon moves.
        self._stuck = False

    @property
    def settled(self) -> bool:
        """True when no candidate waits: the confirmed horizon is as new as it can be."""
        return not self._pending

    async def refresh(self, *, wait: float = 0.0) -> int:
        """Observe the database and return the confirmed horizon.

        With ``wait`` > 0, waits up to that many seconds for the appends that hold
        positions up to the newest candidate to end (normally one commit's time), so a
        caller sees what was committed before it asked. After a wait ran out, later calls
        do not wait until the horizon moves again.
        """
        last_position, next_xid, oldest_xid = await self._observe()
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
            # Only the oldest appender counts here: newer candidates would move the target.
            self._confirm((await self._observe())[2])
        self._stuck = self.confirmed < target
        return self.confirmed

    async def _observe(self) -> tuple[int, int, int]:
        async with self._connection() as conn:
            cur = await conn.execute(self._read)
            row = await cur.fetchone()
        assert row is not None
        return row[0], row[1], row[2]

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
