"""Every connection twofold opens to PostgreSQL, and the process's pool for short statements.

``connect`` and ``connect_sync`` are the one way to connect: autocommit (callers open
transactions), times in UTC, TCP keepalives (without them a connection to a host that
vanished looks alive for hours), a connect timeout (a host that drops packets fails the
attempt in ``connect_timeout`` seconds, not in the minutes TCP would take), and an
``application_name`` that says which process holds it and why (``twofold <role> pid
<pid>``); a value set in the URL wins over each of these, so ``pg_stat_activity`` shows
what each process holds.

Reads and short statements of every store of a process share one pool per database URL
(and event loop): the event store, its idempotency store, the read store, the relay's
checkpoints and the cache's reads on the same URL draw from the same few connections. The
pool is psycopg_pool's ``AsyncConnectionPool``; ``ConnectionPool`` is a store's handle on
it. Every statement is its own transaction (autocommit), so each read takes a fresh
snapshot, which the visibility horizon relies on. A connection that broke is dropped, not
reused (the pool replaces it).

What the pool does not hold: connections that keep state of their own for as long as they
live (the writer's pipelined connection, its thread's, LISTEN, a lease's advisory lock and
the lanes that write views on threads). Those are opened with ``connect``/``connect_sync``
and counted in the budget of docs/postgres.md.

Server down: psycopg_pool connects in the background and lets a caller wait for up to its
timeout while it retries, so a pool that cannot connect would make every statement wait
that long. ``ConnectionPool`` fails fast instead: before its first use, and after a
statement failed with a broken connection, it connects once on its own (one attempt shared
by every caller that comes meanwhile): when that fails, the caller gets psycopg's error at
once (``connection refused``, or a timeout after ``connect_timeout``). A caller that was
already waiting for a connection to be opened when the server went away waits at most
``timeout`` seconds (default 5), then gets a ``PoolTimeout`` that says so.

Taking turns: at most ``size`` callers hold or wait for a connection of psycopg_pool at
once; the others wait on a semaphore in front of it, as long as the statements ahead of
them take (psycopg_pool's own waiting starts a task per wait, which doubled the CPU cost of
lending when 16 tasks shared 4 connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
# Seconds one connection attempt may take (libpq's connect_timeout).
CONNECT_TIMEOUT = 5
# Seconds a statement waits for a connection of the pool before it fails.
POOL_TIMEOUT = 5.0


def application_name(role: str) -> str:
    """What ``pg_stat_activity`` shows for a connection of this process that does ``role``.
    PostgreSQL keeps 63 bytes: a long role (a lease on a long name) is cut, never the pid."""
    tail = f" pid {os.getpid()}"
    head = f"twofold {role}".encode()[: 63 - len(tail)].decode(errors="ignore")
    return head + tail


def _options(url: str, role: str) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        **_KEEPALIVES,
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": application_name(role),
    }
    given = conninfo_to_dict(url)
    return {"autocommit": True, **{k: v for k, v in defaults.items() if k not in given}}


async def connect(url: str, *, role: str) -> AsyncConnection[Any]:
    """An autocommit connection that returns times in UTC (see the module's docstring)."""
    conn = await AsyncConnection.connect(url, **_options(url, role))
    try:
        await _in_utc(conn)
    except BaseException:  # failed or cancelled (a store closing): not left open
        await conn.close()
        raise
    return conn


async def _in_utc(conn: AsyncConnection[Any]) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")


def connect_sync(url: str, *, role: str) -> psycopg.Connection[Any]:
    """The same, synchronous: for the writer's thread and the read store's lanes."""
    conn = psycopg.Connection.connect(url, **_options(url, role))
    try:
        conn.execute("SET TIME ZONE 'UTC'")
    except BaseException:
        conn.close()
        raise
    return conn


class ConnectionPool:
    """A store's handle on its process's pool for ``url`` (one per URL and event loop).

    The pool holds up to the largest ``size`` any of its handles asked for, opened on
    demand; it closes when its last handle does. ``timeout``: the most seconds a statement
    waits for a connection (see the module's docstring).
    """

    def __init__(self, url: str, *, size: int, timeout: float = POOL_TIMEOUT) -> None:
        if size < 1:
            raise ValueError(f"pool_size must be 1 or more, not {size!r}")
        self._url = url
        self._size = size
        self._timeout = timeout
        self._shared: _SharedPool | None = None
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        # The hot path of every read: kept flat (no context manager inside).
        if self._closed:
            raise StoreClosedError()
        shared = self._shared
        if shared is None:
            shared = self._shared = _SharedPool.share(self._url, self._size, self._timeout)
        if not shared.ready:
            await shared.prepare()
        gate = shared.gate
        await gate.acquire()  # returns at once while a connection is free
        try:
            pool = shared.pool
            try:
                conn = await pool.getconn(shared.timeout)
            except PoolTimeout as exc:
                raise shared.timed_out() from exc
            try:
                yield conn
            finally:
                if conn.broken:
                    shared.lost()
                await pool.putconn(conn)
        finally:
            gate.release()

    async def close(self) -> None:
        self._closed = True
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared.release()


class _SharedPool:
    """One psycopg_pool of the process for a URL, and what its handles share."""

    _shared: dict[tuple[str, asyncio.AbstractEventLoop], _SharedPool] = {}

    @classmethod
    def share(cls, url: str, size: int, timeout: float) -> _SharedPool:
        """The pool of this event loop for ``url``, with room for ``size`` connections."""
        key = (url, asyncio.get_running_loop())
        shared = cls._shared.get(key)
        if shared is None:
            shared = cls._shared[key] = cls(url, size=size, timeout=timeout)
        if size > shared._wanted:
            shared._wanted = size
            shared.ready = False  # prepare() grows the pool
        shared.timeout = max(shared.timeout, timeout)
        shared._users += 1
        return shared

    def __init__(self, url: str, *, size: int, timeout: float) -> None:
        self._url = url
        self._users = 0
        self._size = size  # the pool's max_size
        self._wanted = size  # the largest size a handle asked for
        self.timeout = timeout
        # Callers take turns here, not in psycopg_pool: its waiting costs a task per wait
        # (asyncio.wait_for), so it is only asked when a connection is there for the
        # taking (or is being opened). A turn lasts one statement (or short transaction):
        # no timeout here, a caller waits as long as the statements ahead of it take.
        self.gate = asyncio.Semaphore(size)
        self.pool = self._new_pool()
        self.ready = False  # True while the server is known to answer and the size is right
        self._opened = False
        self._reachable = False  # not known before the first connection
        self._away = False  # a check found the server away
        self._probe: asyncio.Task[None] | None = None

    def _new_pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        return AsyncConnectionPool(
            self._url,
            kwargs=_options(self._url, "pool"),
            min_size=0,  # opened on demand: a process that reads nothing holds none
            max_size=self._size,
            open=False,
            configure=_in_utc,
            timeout=self.timeout,
            name=f"twofold pid {os.getpid()}",
        )

    async def prepare(self) -> None:
        """Before a connection is lent: the server answers, the pool has its size."""
        if not self._reachable:
            await self._reach()
        if self._wanted != self._size:  # a handle that asked for more came later
            for _ in range(self._wanted - self._size):
                self.gate.release()  # room for one more caller at a time
            self._size = self._wanted
            await self.pool.resize(0, self._size)  # min_size 0: connects nothing now
        self.ready = self._reachable

    def lost(self) -> None:
        """A lent connection broke: the next caller checks that the server is there."""
        self.ready = self._reachable = False

    def timed_out(self) -> PoolTimeout:
        return PoolTimeout(
            f"no connection to PostgreSQL within {self.timeout:g} s: the pool was opening "
            "one and the server did not answer in time (is it up, and reachable from here?)"
        )

    async def _reach(self) -> None:
        """Connect once, shared by every caller meanwhile; raise at once if that fails."""
        probe = self._probe
        if probe is None:
            probe = self._probe = asyncio.get_running_loop().create_task(self._connect_once())
            probe.add_done_callback(self._probed)
        await asyncio.shield(probe)

    async def _connect_once(self) -> None:
        self._reachable = False
        try:
            conn = await connect(self._url, role="pool-check")
        except BaseException:
            self._away = True
            raise
        await conn.close()  # only a check: the pool opens its own
        if not self._opened:
            self._opened = True
            await self.pool.open()
        elif self._away:
            # Back after an outage: the old pool's reconnections wait out a growing
            # backoff (seconds to minutes); a new pool connects now.
            old, self.pool = self.pool, self._new_pool()
            await self.pool.open()
            await old.close(timeout=1.0)
        self._away = False
        self._reachable = True

    def _probed(self, probe: asyncio.Task[None]) -> None:
        self._probe = None
        if not probe.cancelled():
            probe.exception()  # seen by its callers; retrieved here in case none is left

    async def release(self) -> None:
        """One handle less; the last one closes the pool."""
        self._users -= 1
        if self._users > 0:
            return
        for key, shared in list(self._shared.items()):
            if shared is self:
                del self._shared[key]
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe
        if self._opened:
            await self.pool.close()


def is_connection_error(exc: BaseException) -> bool:
    """True when the failure is the connection's, not the statement's."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
