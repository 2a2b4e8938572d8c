"""A lane: one thread and one synchronous connection that only that thread uses.

Projection handlers are synchronous, so a batch is applied on a thread, with a synchronous
psycopg connection, in one transaction. Each projection writes through a lane of its own,
so projections commit in parallel and a slow one holds up no other.

A *fenced* lane never replaces its connection. A lease is a session-level advisory lock
held by that very connection (``leases``): while the connection lives, the lock is held
and the lane may write; once it broke, the lock may already belong to another process, so
every later call raises LeaseLostError instead of connecting again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import psycopg

from twofold.adapters.postgres._pool import application_name, connect_sync
from twofold.errors import ProjectionError, StoreClosedError

__all__ = ["Lane", "LeaseLostError"]

T = TypeVar("T")


class LeaseLostError(ProjectionError):
    """The connection that held a projection's lease broke: another worker may run it now."""

    def __init__(self, projection: str) -> None:
        self.projection = projection
        super().__init__(
            f"the lease on projection {projection!r} was lost with its connection; this "
            "process stops writing it, and takes it again when it is free"
        )


class Lane:
    """Runs ``fn(conn, *args)`` on the lane's thread, one call at a time, in call order."""

    def __init__(self, url: str, *, name: str, fenced_for: str | None = None) -> None:
        self._url = url
        self.name = name
        # Shown in pg_stat_activity: which process holds which lease.
        self.application_name = application_name(name)
        self._fenced_for = fenced_for
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"twofold-{name}")
        self._conn: psycopg.Connection[Any] | None = None
        self._lost = False
        self._closed = False

    @property
    def fenced(self) -> bool:
        return self._fenced_for is not None

    @property
    def lost(self) -> bool:
        return self._lost

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreClosedError("read store")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._call, fn, args))

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._connection()
        try:
            return fn(conn, *args)
        except Exception as exc:
            if conn.broken or conn.closed:
                self._conn = None
                if self._fenced_for is not None:
                    self._lost = True
                    raise LeaseLostError(self._fenced_for) from exc
            raise

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None:
            return self._conn
        if self._lost:
            assert self._fenced_for is not None
            raise LeaseLostError(self._fenced_for)
        self._conn = connect_sync(self._url, role=self.name)
        return self._conn

    async def disconnect(self) -> None:
        """Close the connection, if any; the next call opens another. Only for a lane that
        holds nothing on its connection (a lease not acquired): a fenced lane's connection
        that did hold a lock is never replaced (``close`` it instead)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._disconnect)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Close the connection (which releases a lease's lock) and stop the thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._fenced_for is not None:
            self._lost = True
