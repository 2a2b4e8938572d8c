"""Every connection twofold opens to PostgreSQL, and the process's pool for short statements.

``connect`` and ``connect_sync`` are the one way to connect: autocommit (callers open
transactions), times in UTC, TCP keepalives (without them a connection to a host that
vanished looks alive for hours), and an ``application_name`` that says which process holds
it and why (``twofold <role> pid <pid>``; a name set in the URL wins), so
``pg_stat_activity`` shows what each process holds.

Reads and short statements of every store of a process share one pool per database URL
(and event loop): the event store, its idempotency store and the read store on the same
URL draw from the same few connections (``ConnectionPool`` is a store's handle on it).
Every statement is its own transaction (autocommit), so each read takes a fresh snapshot,
which the visibility horizon relies on. A connection that broke is dropped, not reused.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from twofold.errors import StoreClosedError

__all__ = [
    "ConnectionPool",
    "application_name",
    "connect",
    "connect_sync",
    "is_connection_error",
]

# Seconds idle before the first probe, between probes, and probes lost before the
# connection counts as broken: a dead server or host is noticed in about 11 s.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


def application_name(role: str) -> str:
    """What ``pg_stat_activity`` shows for a connection of this process that does ``role``."""
    return f"twofold {role} pid {os.getpid()}"[:63]  # PostgreSQL keeps 63 bytes


def _options(url: str, role: str) -> dict[str, Any]:
    options: dict[str, Any] = {"autocommit": True, **_KEEPALIVES}
    if "application_name" not in conninfo_to_dict(url):
        options["application_name"] = application_name(role)
    return options


async def connect(url: str, *, role: str) -> AsyncConnection[Any]:
    """An autocommit connection that returns times in UTC (see the module's docstring)."""
    conn = await AsyncConnection.connect(url, **_options(url, role))
    await conn.execute("SET TIME ZONE 'UTC'")
    return conn


def connect_sync(url: str, *, role: str) -> psycopg.Connection[Any]:
    """The same, synchronous: for the writer's thread and the read store's lanes."""
    conn = psycopg.Connection.connect(url, **_options(url, role))
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


class ConnectionPool:
    """A store's handle on its process's pool for ``url`` (one per URL and event loop).

    The pool holds up to the largest ``size`` any of its handles asked for, opened on
    demand; it closes when its last handle does.
    """

    def __init__(self, url: str, *, size: int) -> None:
        self._url = url
        self._size = size
        self._pool: _Pool | None = None
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        if self._closed:
            raise StoreClosedError()
        pool = self._pool
        if pool is None:
            pool = self._pool = _Pool.share(self._url, self._size)
        async with pool.connection() as conn:
            yield conn

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.release()


class _Pool:
    """Up to ``size`` connections, opened on demand and handed to one task at a time."""

    _shared: dict[tuple[str, asyncio.AbstractEventLoop], _Pool] = {}

    @classmethod
    def share(cls, url: str, size: int) -> _Pool:
        """The pool of this event loop for ``url``, with room for ``size`` connections."""
        key = (url, asyncio.get_running_loop())
        pool = cls._shared.get(key)
        if pool is None or pool._closed:
            pool = cls._shared[key] = cls(url, size=size)
        pool._size = max(pool._size, size)
        pool._users += 1
        return pool

    async def release(self) -> None:
        """One handle less; the last one closes the pool."""
        self._users -= 1
        if self._users <= 0:
            for key, pool in list(self._shared.items()):
                if pool is self:
                    del self._shared[key]
            await self.close()

    def __init__(self, url: str, *, size: int) -> None:
        self._users = 0
        self._url = url
        self._size = size
        self._idle: list[AsyncConnection[Any]] = []
        self._open = 0
        self._available = asyncio.Condition()
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        conn = await self._acquire()
        try:
            yield conn
        except BaseException:
            await self._release(conn, broken=conn.broken or conn.closed)
            raise
        await self._release(conn, broken=conn.broken or conn.closed)

    async def _acquire(self) -> AsyncConnection[Any]:
        async with self._available:
            while True:
                if self._closed:
                    raise StoreClosedError()
                if self._idle:
                    return self._idle.pop()
                if self._open < self._size:
                    self._open += 1
                    break
                await self._available.wait()
        try:
            return await connect(self._url, role="pool")
        except BaseException:
            async with self._available:
                self._open -= 1
                self._available.notify()
            raise

    async def _release(self, conn: AsyncConnection[Any], *, broken: bool) -> None:
        if broken or self._closed or conn.info.transaction_status != TransactionStatus.IDLE:
            # Not idle (a cancelled statement may leave it mid-query): start afresh.
            await conn.close()
            async with self._available:
                self._open -= 1
                self._available.notify()
            return
        async with self._available:
            self._idle.append(conn)
            self._available.notify()

    async def close(self) -> None:
        async with self._available:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._available.notify_all()
        for conn in idle:
            await conn.close()


def is_connection_error(exc: BaseException) -> bool:
    """True when the failure is the connection's, not the statement's."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
