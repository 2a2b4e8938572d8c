"""The writer's thread and its synchronous connection: the path for what the loop does not do.

Inline projections (their handlers are synchronous and run in the batch's transaction),
whatever the loop path hands over (a version mismatch, a conflict, an error: ``batch``
settles it), units (``units``) and jobs run here, one at a time, in the order the writer
gives them. The thread answers each piece of work with a single ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from twofold.adapters.postgres._pool import connect_sync, is_connection_error
from twofold.adapters.postgres.append.batch import Appender, lost
from twofold.adapters.postgres.append.requests import InlineApplier, Job, Request, Unit, settle
from twofold.adapters.postgres.append.units import UnitWriter

__all__ = ["ThreadWriter"]

Connection = psycopg.Connection[Any]


class ThreadWriter:
    """The writer's thread and its synchronous connection, started when first needed."""

    def __init__(self, url: str, schema: sql.Identifier) -> None:
        self._url = url
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._conn: Connection | None = None
        self._appender = Appender(schema, connection=self._connection, drop=self._drop)
        self._units = UnitWriter(schema, connection=self._connection, drop=self._drop)

    async def write(self, batch: list[Request], inline: Mapping[str, InlineApplier]) -> int:
        """Write and settle ``batch`` on the thread; the last position committed."""
        return await self._do(lambda: self._write(batch, inline), batch)

    async def write_units(self, units: list[Unit], inline: Mapping[str, InlineApplier]) -> int:
        """Write and settle ``units`` on the thread; the last position committed."""
        return await self._do(lambda: self._write_units(units, inline), units)

    async def job(self, job: Job) -> None:
        await self._do(lambda: self._run_job(job), [])

    async def _do(self, work: Callable[[], int], requests: Sequence[Request | Unit]) -> int:
        """Run ``work`` on the thread, then settle ``requests`` on the loop; its result."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._put((work, requests, done, loop))
        return await done

    async def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.wrap_future(self._finished)

    def _put(self, item: Any) -> None:
        self._queue.put(item)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._main, name="twofold-postgres-writer", daemon=True
            )
            self._thread.start()

    def _main(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                work, requests, done, loop = item
                answer = _answer(requests, work(), done)
                # RuntimeError: that loop is closed, so nobody awaits these futures any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(answer)
        finally:
            self._drop()
            self._finished.set_result(None)

    def _write(self, batch: list[Request], inline: Mapping[str, InlineApplier]) -> int:
        try:
            return self._appender.write(batch, inline)
        except BaseException as exc:
            for request in batch:
                request.fail(lost(exc) if is_connection_error(exc) else exc)
            return 0

    def _write_units(self, units: list[Unit], inline: Mapping[str, InlineApplier]) -> int:
        try:
            return self._units.write(units, inline)
        except BaseException as exc:
            for unit in units:
                unit.fail(lost(exc) if is_connection_error(exc) else exc)
            return 0

    def _run_job(self, job: Job) -> int:
        try:
            outcome: tuple[bool, Any] = (True, job.fn(self._connection()))
        except BaseException as exc:
            if is_connection_error(exc):
                self._drop()
            outcome = (False, exc)
        job.outcome = outcome
        return 0

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._drop()
            conn = self._conn = connect_sync(self._url, role="writer-thread")
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._appender.single.forget()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _answer(
    requests: Sequence[Request | Unit], result: int, done: asyncio.Future[int]
) -> Callable[[], None]:
    def answer() -> None:
        settle(requests)
        if not done.done():
            done.set_result(result)

    return answer
