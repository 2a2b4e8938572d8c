"""Group commit on a thread: one writer per store turns concurrent appends into one transaction.

Appends made in one turn of the event loop go to the thread together, as one item of its
queue; the thread, with a synchronous connection of its own, takes every append that is
waiting (up to a cap), writes them as one transaction (``_batch``), and hands all the
answers of the batch back to the event loop with a single ``call_soon_threadsafe``. The
event loop never waits on the database (DESIGN 8), and an append costs the loop little
more than a future: a sequential writer's appends are bound by the client's CPU, and a
synchronous driver call on a thread costs a fraction of an asyncio one.

The thread also sends the store's notifications (``_listener``), right after the commits
they announce, paced: the first commit after a quiet spell is announced at once, those that
follow within ``notify_interval`` share one notification at its end.

Other work that must not interleave with appends (attaching an inline projection, switching
one to a rebuilt copy) runs on the same thread between batches, through ``run``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from twofold.adapters.postgres._batch import Appender, InlineApplier, Request, lost
from twofold.adapters.postgres._pool import connect_sync, is_connection_error
from twofold.adapters.postgres._single import check_result
from twofold.application.records import AppendResult, ExpectedVersion, NewEvent
from twofold.errors import EventStoreError, StoreClosedError

__all__ = ["BatchWriter"]

T = TypeVar("T")
_log = logging.getLogger("twofold.postgres")
_STOP = object()


@dataclass(slots=True)
class _Job:
    fn: Callable[[psycopg.Connection[Any]], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class BatchWriter:
    """Writes appends in batches on one thread and connection; ``on_commit`` gets, on the
    event loop, the last position of every batch that committed."""

    def __init__(
        self,
        url: str,
        schema: sql.Identifier,
        *,
        on_commit: Callable[[int], None],
        channel: str,
        notify_interval: float,
        max_events: int = 1000,
    ) -> None:
        self._url = url
        self._on_commit = on_commit
        self._max_events = max_events
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._closing = False
        self._conn: psycopg.Connection[Any] | None = None
        self._appender = Appender(schema, connection=self._connection, drop=self._drop)
        # Replaced whole, never changed in place: the thread reads it once per batch.
        self._inline: dict[str, InlineApplier] = {}
        self._pending: list[Request] = []  # the event loop's, handed over once per turn
        self._backlog: deque[Request] = deque()  # the thread's: appends not yet written
        self._carry: Any = None  # a job or the stop marker, taken while draining the queue
        self._channel = channel.encode()
        self._notify_interval = notify_interval
        self._latest = 0  # the last position committed ...
        self._announced = 0  # ... and the last one notified
        self._notify_at = 0.0  # monotonic time before which no notification is sent

    # -- the event loop's side -------------------------------------------------------------

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        if self._closing:
            raise StoreClosedError()
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append(Request(stream_id, events, expected, future, loop))
        return await future

    async def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn(connection)`` on the writer's thread, between two batches."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._hand_over()  # appends made before run() are written before it
        self._put(_Job(fn, future, loop))
        return await future

    def attach(self, projection: InlineApplier) -> None:
        """Apply ``projection`` inside every later batch's transaction."""
        self._inline = {**self._inline, projection.name: projection}

    def detach(self, name: str) -> None:
        self._inline = {k: v for k, v in self._inline.items() if k != name}

    @property
    def inline(self) -> Mapping[str, InlineApplier]:
        return self._inline

    def _hand_over(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            try:
                self._put(pending)
            except StoreClosedError as exc:
                for request in pending:
                    if not request.future.done():
                        request.future.set_exception(exc)

    def _put(self, item: Any) -> None:
        # Under the lock, so nothing is queued behind the stop marker and left unanswered.
        with self._lock:
            if self._closing:
                raise StoreClosedError()
            self._queue.put(item)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._main, name="twofold-postgres-writer", daemon=True
                )
                self._thread.start()

    async def close(self) -> None:
        """Write what is queued, send the last notification, then stop."""
        self._hand_over()
        with self._lock:
            if self._closing:
                started = self._thread is not None
            else:
                self._closing = True
                started = self._thread is not None
                if started:
                    self._queue.put(_STOP)
        if started:
            await asyncio.wrap_future(self._finished)

    # -- the thread -----------------------------------------------------------------------

    def _main(self) -> None:
        try:
            while True:
                if not self._backlog:
                    item = self._next()
                    if item is _STOP:
                        return
                    if isinstance(item, _Job):
                        self._run_job(item)
                        continue
                    if item is None:
                        continue
                    self._backlog.extend(item)
                    self._drain()
                batch = self._take()
                if batch:
                    self._write(batch)
        finally:
            self._announce()
            self._drop()
            self._finished.set_result(None)

    def _next(self) -> Any:
        """The next item; None when a paced notification fell due first (it is sent)."""
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if self._announced >= self._latest:
            return self._queue.get()
        try:
            return self._queue.get(timeout=max(0.0, self._notify_at - time.monotonic()))
        except queue.Empty:
            self._announce()
            return None

    def _drain(self) -> None:
        """Move the appends queued meanwhile to the backlog, up to a job or the stop."""
        while self._carry is None:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, list):
                self._backlog.extend(item)
            else:
                self._carry = item

    def _take(self) -> list[Request]:
        """The next batch from the backlog: up to the cap, each event id at most once."""
        batch: list[Request] = []
        ids: set[uuid.UUID] = set()
        count = 0
        backlog = self._backlog
        while backlog:
            request = backlog[0]
            if request.future.cancelled():  # its caller gave up before it was written
                backlog.popleft()
                continue
            mine = {event.event_id for event in request.events}
            if batch and (count + len(request.events) > self._max_events or mine & ids):
                # An id twice in one batch would fail the insert: the later append (a retry
                # racing its original) waits for the next batch and is settled there.
                break
            backlog.popleft()
            batch.append(request)
            ids |= mine
            count += len(request.events)
        return batch

    def _write(self, batch: list[Request]) -> None:
        try:
            last = self._appender.write(batch, self._inline)
        except BaseException as exc:
            # The writer must outlive any failure: settle what is left and go on.
            for request in batch:
                request.fail(lost(exc) if is_connection_error(exc) else exc)
            last = 0
        if last:
            self._latest = max(self._latest, last)
        self._deliver(batch, last)
        if self._latest > self._announced and time.monotonic() >= self._notify_at:
            self._announce()

    def _deliver(self, batch: list[Request], last: int) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Request]] = {}
        for request in batch:
            by_loop.setdefault(request.loop, []).append(request)
        on_commit = self._on_commit if last else None
        for loop, requests in by_loop.items():
            # RuntimeError: that loop is closed, so nobody can await its futures any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, requests, on_commit, last)

    def _run_job(self, job: _Job) -> None:
        try:
            outcome: tuple[bool, Any] = (True, job.fn(self._connection()))
        except BaseException as exc:
            if is_connection_error(exc):
                self._drop()
            outcome = (False, exc)
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(_settle_job, job.future, outcome)

    def _announce(self) -> None:
        """Tell other processes the log grew (a hint: they re-read the log anyway)."""
        if self._announced >= self._latest:
            return
        position = self._latest
        try:
            conn = self._connection()
            result = conn.pgconn.exec_params(
                b"SELECT pg_notify($1, $2)", [self._channel, str(position).encode()]
            )
            check_result(conn, result)
        except Exception as exc:
            if is_connection_error(exc):
                self._drop()
            # Readers in other processes fall back to polling; nothing is lost.
            _log.warning("NOTIFY failed (readers will poll): %s", exc)
        self._announced = position
        self._notify_at = time.monotonic() + self._notify_interval

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._drop()
            conn = self._conn = connect_sync(self._url)
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._appender.single.forget()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _settle(requests: list[Request], on_commit: Callable[[int], None] | None, last: int) -> None:
    # On the event loop. A future may be done already: its awaiting task was cancelled.
    for request in requests:
        _settle_job(
            request.future,
            request.outcome or (False, EventStoreError("the append was not settled")),
        )
    if on_commit is not None:
        on_commit(last)


def _settle_job(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
