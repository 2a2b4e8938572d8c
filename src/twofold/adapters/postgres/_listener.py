"""Wake-ups between processes: NOTIFY after a commit (sent by ``append.writer``), LISTEN here.

A notification is a hint that the log grew, never data: readers always re-read the log, so
a lost notification only delays them until the next poll.

NOTIFY is sent right *after* the append's commit, not inside its transaction: PostgreSQL
holds a cluster-wide lock from a notifying transaction's pre-commit until its commit is
flushed (``PreCommit_Notify`` in async.c), which would put every append's fsync in one
queue (measured: 8 writers fell from 7.6k to 2.9k commits/s). Sent afterwards from a
transaction without an xid, the lock covers no flush.

Notifications are paced: the first commit after a quiet spell is announced at once, the
commits that follow within ``interval`` share one notification at its end. A NOTIFY per
commit would cost as much as the append itself when a process appends one event at a time;
paced, other processes hear of a commit at most ``interval`` late. Subscribers in the
appending process are woken directly, without waiting for any of this.

And nobody is told when nobody else listens. A NOTIFY is a transaction of its own that
takes a database-wide lock: with 8 processes appending one event at a time, one NOTIFY every
10 ms from each cost a third of their throughput (measured). So every LISTEN connection
also holds a shared advisory lock keyed by its channel (``presence_key``), and a writer
notifies only while a session other than its own store's listener holds it
(``LISTENERS``, asked at most once a second). A listener takes the lock before it reads
the log, so what it may not have been told, it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg import AsyncConnection, sql

from twofold.adapters.postgres._pool import connect
from twofold.application.failure import RECONNECT

__all__ = ["LISTENERS", "ListenLoop", "Listener", "Signal", "advisory_holders", "presence_key"]


def advisory_holders(key: str, other_than: str) -> str:
    """SQL counting the sessions, other than the backend pid ``other_than``, that hold the
    advisory lock taken as ``pg_advisory_lock(hashtextextended(key, 0))`` in this database
    (``key`` and ``other_than`` are the statement's placeholders)."""
    return (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        f" AND objsubid = 1 AND pid <> {other_than}"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f" AND classid = ((hashtextextended({key}, 0) >> 32) & 4294967295)::oid"
        f" AND objid = (hashtextextended({key}, 0) & 4294967295)::oid"
    )


# How many sessions, other than $2, listen on the channel whose presence_key is $1.
LISTENERS = advisory_holders("$1", "$2::integer").encode()


def presence_key(channel: str) -> str:
    """The advisory lock (hashed) every listener of ``channel`` holds shared."""
    return f"twofold.listen:{channel}"


_log = logging.getLogger("twofold.postgres")


class Signal:
    """Wakes every task waiting for the log to change.

    Take ``token()`` *before* reading, wait on it after: a change between the two is not
    lost, because the token fired.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._taken = False

    def token(self) -> asyncio.Event:
        self._taken = True
        return self._event

    def fire(self) -> None:
        # Called after every commit: nothing to do (and no new Event) if nobody looked.
        if self._taken:
            self._taken = False
            self._event.set()
            self._event = asyncio.Event()


class ListenLoop:
    """One LISTEN connection on ``channel``, reconnected with backoff until ``close``.

    After each LISTEN takes effect, ``on_listen(conn, first)`` runs (``first``: on the
    first connection; later ones follow a loss, when notifications may have been missed);
    each notification's payload goes to ``on_notify``. ``start`` returns once the first
    LISTEN is in effect, or raises if the first connection fails.
    """

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        name: str,
        on_listen: Callable[[AsyncConnection[Any], bool], Awaitable[None]],
        on_notify: Callable[[str], None],
    ) -> None:
        self._url = url
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._name = name
        self._on_listen = on_listen
        self._on_notify = on_notify
        self._conn: AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None

    @property
    def backend_pid(self) -> int:
        """The LISTEN connection's server process, while it is listening; else 0."""
        conn = self._conn
        return conn.info.backend_pid if conn is not None else 0

    async def start(self) -> None:
        if self._task is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(), name=self._name)
        assert self._ready is not None
        await asyncio.shield(self._ready)

    async def _run(self) -> None:
        assert self._ready is not None
        failures = 0  # in a row: the backoff grows with them, and resets once listening
        while True:
            try:
                conn = await connect(self._url, role="listen")
            except Exception as exc:
                if not self._ready.done():
                    self._ready.set_exception(exc)
                    return
                delay = RECONNECT.delay(failures)
                failures += 1
                _log.warning("%s: connecting failed, retrying in %.2fs: %s", self._name, delay, exc)
                await asyncio.sleep(delay)
                continue
            try:
                await conn.execute(self._listen)
                await self._on_listen(conn, not self._ready.done())
                self._conn = conn
                if not self._ready.done():
                    self._ready.set_result(None)
                failures = 0
                async for notify in conn.notifies():
                    self._on_notify(notify.payload)
            except Exception as exc:
                # Readers poll meanwhile; listening again is all there is to do.
                _log.warning("%s: connection failed, reconnecting: %s", self._name, exc)
                await asyncio.sleep(RECONNECT.delay(failures))
                failures += 1
            finally:
                self._conn = None
                await conn.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()


class Listener:
    """One LISTEN connection per store; each notification fires the signal."""

    def __init__(self, url: str, channel: str, signal: Signal) -> None:
        self._presence = presence_key(channel)
        self._signal = signal
        self._loop = ListenLoop(
            url,
            channel,
            name="twofold-postgres-listener",
            on_listen=self._listening,
            on_notify=lambda _: signal.fire(),
        )

    @property
    def backend_pid(self) -> int:
        """Of the LISTEN connection, while there is one (0 otherwise)."""
        return self._loop.backend_pid

    async def start(self) -> None:
        """Listen from now on (returns once LISTEN is in effect)."""
        await self._loop.start()

    async def _listening(self, conn: AsyncConnection[Any], first: bool) -> None:
        # Writers notify only while someone holds this (see the module's docstring).
        await conn.execute(
            "SELECT pg_advisory_lock_shared(hashtextextended(%s, 0))", (self._presence,)
        )
        # Notifications may have been missed while not listening.
        self._signal.fire()

    async def close(self) -> None:
        await self._loop.close()
