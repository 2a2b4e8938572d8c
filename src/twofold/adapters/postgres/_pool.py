"""A small pool of autocommit connections for reads and short statements.

Every statement is its own transaction (autocommit), so each read takes a fresh snapshot,
which the visibility horizon relies on. A connection that broke is dropped, not reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from twofold.errors import StoreClosedError

__all__ = ["ConnectionPool", "connect", "connect_sync", "is_connection_error"]


async def connect(url: str) -> AsyncConnection[Any]:
    """An autocommit connection that returns times in UTC."""
    conn = await AsyncConnection.connect(url, autocommit=True)
    await conn.execute("SET TIME ZONE 'UTC'")
    return conn


def connect_sync(url: str) -> psycopg.Connection[Any]:
    """The same, synchronous: for the writer's thread."""
    conn = psycopg.Connection.connect(url, autocommit=True)
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


class ConnectionPool:
    """Up to ``size`` connections, opened on demand and handed to one task at a time."""

    def __init__(self, url: str, *, size: int) -> None:
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
            return await connect(self._url)
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
