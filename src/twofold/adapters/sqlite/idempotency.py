"""Idempotency keys in the event store's SQLite file (table ``idempotency``).

It shares the event store's threads: a ``put`` joins the same group commit as the appends,
and there is one writer per file in the process, so writes never contend for the lock here.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from datetime import timedelta

from twofold.adapters._idempotency import (
    DEFAULT_KEEP_FOR,
    PRUNE_EVERY,
    check_keep_for,
    check_key,
    check_put,
)
from twofold.adapters.sqlite import _queries as sql
from twofold.adapters.sqlite._append import Batch
from twofold.adapters.sqlite.event_store import SQLiteEventStore

__all__ = ["SQLiteIdempotencyStore"]


class SQLiteIdempotencyStore:
    """The IdempotencyStore port on an open SQLiteEventStore's file.

    The store writes a command's key with its events, in the same transaction
    (``append_streams``); this reads them, and stores the answers of commands that
    appended nothing.

    ``SQLiteIdempotencyStore(store)`` is usable while ``store`` is open and needs no opening
    or closing of its own: a second writer on the file would contend with the store's for
    SQLite's lock, while sharing puts each ``put`` in the appends' group commit. ``put``
    stores the answer unless the key is taken, and returns what is stored for the key: the
    first answer always wins, also across processes.
    """

    def __init__(self, store: SQLiteEventStore, *, keep_for: timedelta = DEFAULT_KEEP_FOR) -> None:
        if not isinstance(store, SQLiteEventStore):
            raise TypeError(
                "SQLiteIdempotencyStore shares the threads of an open SQLiteEventStore: "
                f"pass SQLiteIdempotencyStore(store), not a {type(store).__name__}"
            )
        self._store = store
        self._keep_for = check_keep_for(keep_for)
        self._keep_us = keep_for // timedelta(microseconds=1)
        self._puts = 0

    @property
    def keep_for(self) -> timedelta:
        return self._keep_for

    async def get(self, key: str) -> tuple[str, bytes] | None:
        check_key(key)
        cutoff = time.time_ns() // 1000 - self._keep_us
        return await self._store._read(
            functools.partial(sql.idempotency_get, key=key, cutoff=cutoff)
        )

    async def put(self, key: str, fingerprint: str, result: bytes) -> tuple[str, bytes]:
        check_put(key, fingerprint, result)
        self._puts += 1
        return await self._store._write(
            functools.partial(
                sql.idempotency_put,
                key=key,
                fingerprint=fingerprint,
                result=result,
                keep_us=self._keep_us,
                prune=self._puts % PRUNE_EVERY == 0,
            )
        )

    async def prune(self) -> int:
        """Delete up to PRUNE_BATCH of the keys kept longer than ``keep_for``; how many."""

        def prune(conn: sqlite3.Connection, batch: Batch) -> int:
            return sql.idempotency_prune(conn, batch.now_us - self._keep_us)

        deleted: int = await self._store._write(prune)
        return deleted
