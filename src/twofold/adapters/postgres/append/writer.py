"""Group commit: one writer per store turns concurrent appends into one transaction.

Appends wait in a queue on the event loop; the writer takes every append that is waiting
(up to ``max_events`` events) and writes them as one transaction, so appends made while a
batch is in flight share the next commit. Batches run one at a time, in order, whichever
path they take.

Which path an append takes, and why::

    append(stream)                 append_streams(...)       run(fn)
         |                          (a unit; and every        (attach or switch an
         |                           idempotency key)          inline projection)
         v                                 |                        |
    inline projections attached? --yes-----+------------------------+
         | no                              |                        |
         v                                 v                        v
    writer IDLE? --yes--> GATHERING: the rest of this loop turn; then
         | no             one lone append -----> loop path, sent at once (``loop``)
         v                several, or busy --+
    queued for the writer task <-------------+
         |
         +-- single appends --> loop path (``loop``): each append's prepared INSERT
         |                      (``sql``), pipelined, one Sync = one transaction
         |     all written? ---> answered on the loop
         |     otherwise (a mismatch, a unique violation, an error) ---+
         v                                                             v
         +-- units, jobs, inline batches -----------------> thread path (``thread``):
                                                            ``batch`` settles single
                                                            appends, ``units`` units

- The **loop path** is the usual case: libpq non-blocking on the event loop, no thread in
  between, because for a process that appends one event at a time the client's CPU per
  append sets the rate, and a hand-over to a thread and back costs more than the statement.
- The **thread path** takes what needs Python inside the transaction or a blocking
  connection: inline projections (synchronous handlers, in the batch's transaction), units
  (all or none, the idempotency key's answer built between two statements), settling what
  the loop path could not write, and jobs. It answers with one ``call_soon_threadsafe``.

After commits the writer sends the store's notifications (``_listener``), paced: the first
commit after a quiet spell is announced at once, those that follow within
``notify_interval`` share one notification at its end.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from twofold.adapters.postgres._pool import is_connection_error
from twofold.adapters.postgres.append.batch import lost
from twofold.adapters.postgres.append.loop import LoopWriter
from twofold.adapters.postgres.append.requests import (
    InlineApplier,
    Job,
    Request,
    Unit,
    Written,
    set_outcome,
    settle,
)
from twofold.adapters.postgres.append.sql import expected_code
from twofold.adapters.postgres.append.thread import ThreadWriter
from twofold.errors import EventStoreError, StoreClosedError
from twofold.records import (
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    NewEvent,
    StreamAppend,
)

__all__ = ["BatchWriter", "WriterState"]

T = TypeVar("T")
_log = logging.getLogger("twofold.postgres")
# Seconds the writer trusts its answer to "does another process listen?" (``_listener``).
_LISTENERS_FOR = 1.0
# The most streams whose versions the writer remembers (``saw``).
_KNOWN_STREAMS = 100_000
Connection = psycopg.Connection[Any]


class WriterState(enum.Enum):
    """What the writer is doing; the transitions (all on the event loop)::

                append                  end of the loop turn,
        IDLE -----------------> GATHERING ---- one lone append ----> SENDING
         ^ ^                        |                                  |  |
         | |                        | several appends, or inline       |  | answered,
         | |                        v                                  |  | nothing queued
         | +--- nothing left --- WRITING <--- answered, more queued ---+  |
         |                          ^         (or the append refused)     |
         +--------------------------|-------------------------------------+
                                    |
        IDLE --- a unit, a job, a due notification

        any state --close()--> CLOSING --queue written, last NOTIFY sent--> CLOSED

    In GATHERING, SENDING and WRITING new appends queue behind the writer; in CLOSING and
    CLOSED they are refused (StoreClosedError). While SENDING, the writer task waits for
    the lone append's answer, which comes from the loop's reading of the socket.
    """

    IDLE = "idle"  # nothing queued, nothing in flight
    GATHERING = "gathering"  # an append waits for the end of its loop turn (``_send_soon``)
    SENDING = "sending"  # a lone append is in flight on the loop path, no task involved
    WRITING = "writing"  # the writer task writes batches, units, jobs or a notification
    CLOSING = "closing"  # ``close``: the queue is written, then the writer stops
    CLOSED = "closed"


class BatchWriter:
    """Writes appends in batches; ``on_commit`` gets the last position of every batch."""

    def __init__(
        self,
        url: str,
        schema: sql.Identifier,
        *,
        on_commit: Callable[[int], None],
        channel: str,
        notify_interval: float,
        own_listener: Callable[[], int] = lambda: 0,
        max_events: int = 1000,
    ) -> None:
        self._on_commit = on_commit
        self._own_listener = own_listener
        self._max_events = max_events
        self._direct = LoopWriter(url, schema)
        self._thread = ThreadWriter(url, schema)
        # Replaced whole, never changed in place: the thread reads it once per batch.
        self._inline: dict[str, InlineApplier] = {}
        self._pending: deque[Request | Unit | Job] = deque()
        self._wake: asyncio.Future[None] | None = None  # resolved when work comes
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # wakes the writer for a NOTIFY
        self._versions: dict[str, int] = {}  # the versions streams are known to have reached
        self._state = WriterState.IDLE
        self._channel = channel
        self._notify_interval = notify_interval
        self._latest = 0  # the last position committed ...
        self._announced = 0  # ... and the last one notified
        self._notify_at = 0.0  # loop time before which no notification is sent
        self._listened = False  # whether another session listens, as last asked ...
        self._listened_until = 0.0  # ... and until when the answer holds

    # -- the API --------------------------------------------------------------------------

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        request = Request(stream_id, events, expected, future)
        if self._state is not WriterState.IDLE or self._inline:
            self._enqueue(request)
        else:
            # Nothing else to write. Wait for the end of this loop turn, not for the writer
            # task: appends made in the same turn (the writers a batch's answer woke) join
            # this one in a batch; a lone append is sent as it is (``_send_soon``).
            self._pending.append(request)
            self._state = WriterState.GATHERING
            loop.call_soon(self._send_soon)
        return await future

    async def append_streams(
        self, appends: tuple[StreamAppend, ...], idempotency: IdempotencyRecord | None
    ) -> tuple[AppendResult, ...]:
        """Append to several streams as one unit, all or none (``_units``)."""
        future: asyncio.Future[tuple[AppendResult, ...]] = (
            asyncio.get_running_loop().create_future()
        )
        self._enqueue(Unit(appends, idempotency, future))
        return await future

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` on the writer's thread, between two batches."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(Job(fn, future))
        return await future

    def attach(self, projection: InlineApplier) -> None:
        """Apply ``projection`` inside every later batch's transaction."""
        self._inline = {**self._inline, projection.name: projection}

    @property
    def state(self) -> WriterState:
        return self._state

    @property
    def connection(self) -> psycopg.AsyncConnection[Any] | None:
        """The connection appends go out on (when no projection is applied inline)."""
        return self._direct.connection

    async def close(self) -> None:
        """Write what is queued, send the last notification, then stop."""
        self._state = WriterState.CLOSING
        self._nudge()
        assert self._task is not None
        await self._task
        await self._thread.stop()
        await self._direct.close()

    def _send_soon(self) -> None:
        """At the end of the loop turn of an append made while the writer was idle: send a
        lone append at once, on the loop's lane; give anything more to the writer task."""
        if self._state is not WriterState.GATHERING:
            self._nudge()  # CLOSING: the writer task writes what is queued
            return
        pending = self._pending
        request = pending[0] if len(pending) == 1 else None
        if self._inline or not self._direct.idle or not isinstance(request, Request):
            self._state = WriterState.WRITING
            self._nudge()
            return
        pending.popleft()
        if request.future.done():  # its caller gave up already
            self._state = WriterState.IDLE
            return
        self._state = WriterState.SENDING
        try:
            self._direct.send_one(
                request,
                lambda written, exc: self._sent(request, written, exc),
                known=self._known(request),
            )
        except BaseException:
            self._state = WriterState.WRITING
            self._enqueue(request)

    def _sent(self, request: Request, written: Written | None, exc: BaseException | None) -> None:
        """The answer to a lone append sent by ``_send_soon`` (on the loop, from the socket)."""
        if written is not None:
            request.resolve(written.result)
            settle([request])
            self.saw(request.stream_id, written.result.version)
            self._committed(written.result.position)
        elif exc is not None:
            request.fail(lost(exc) if is_connection_error(exc) else exc)
            settle([request])
        else:
            request.refused = True
            self._pending.appendleft(request)  # a mismatch or an error: the writer looks
        if self._state is WriterState.SENDING:
            self._state = WriterState.WRITING if self._pending else WriterState.IDLE
        if self._pending or self._state is WriterState.CLOSING:
            self._nudge()

    def _known(self, request: Request) -> bool:
        """Whether ``request`` may go without reading its stream's version (``sql._KNOWN``):
        it expects no stream, or a version this store saw the stream reach."""
        if request.refused:
            return False
        code = expected_code(request.expected)
        return code == 0 or 0 < code <= self._versions.get(request.stream_id, 0)

    def saw(self, stream_id: str, version: int) -> None:
        """``stream_id`` has reached ``version`` (written or read here): versions never go
        away, so an append expecting that version needs no read to rule out a gap."""
        versions = self._versions
        if version > versions.get(stream_id, 0):
            if len(versions) >= _KNOWN_STREAMS:
                versions.clear()  # a bound, not a cache policy: forgetting costs one read
            versions[stream_id] = version

    def _committed(self, last: int) -> None:
        self._latest = max(self._latest, last)
        self._on_commit(last)
        if self._latest <= self._announced:
            return
        loop = asyncio.get_running_loop()
        if not self._listened and loop.time() < self._listened_until:
            self._announced = self._latest  # nobody else listens, as recently asked
            return
        if loop.time() >= self._notify_at:
            self._nudge()
        elif self._timer is None:
            # Paced: the writer wakes when the notification falls due.
            self._timer = loop.call_at(self._notify_at, self._notify_due)

    def _nudge(self) -> None:
        """Wake the writer task (starting it if need be): there is work, or it should look."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="twofold-postgres-writer")
        self._wake_up()

    def _enqueue(self, item: Request | Unit | Job) -> None:
        if self._state in (WriterState.CLOSING, WriterState.CLOSED):
            raise StoreClosedError()
        self._pending.append(item)
        self._nudge()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- the writer task ------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = self._announced < self._latest and loop.time() >= self._notify_at
            closing = self._state is WriterState.CLOSING
            if self._direct.busy or not (self._pending or due or closing):
                # Nothing to do, or a lone append sent by ``_send_soon`` is in flight (its
                # answer wakes the writer).
                if self._state is WriterState.WRITING:
                    self._state = WriterState.IDLE
                self._wake = loop.create_future()
                await self._wake
                continue
            if not self._pending and not due:
                break  # closing, and all written
            if not closing:
                self._state = WriterState.WRITING
            await self._step()
        if self._timer is not None:
            self._timer.cancel()
        await self._announce()
        self._state = WriterState.CLOSED

    async def _step(self) -> None:
        """Send a due notification, or write the next batch, or run the next job."""
        if not self._pending:
            await self._announce()
            return
        item = self._pending[0]
        if isinstance(item, Job):
            self._pending.popleft()
            await self._thread.job(item)
            set_outcome(item.future, item.outcome or (False, EventStoreError("job not run")))
            return
        if isinstance(item, Unit):
            await self._write_units()
            return
        batch = self._take()
        try:
            last = await self._write(batch)
        except Exception as exc:
            # The writer must outlive any failure: settle what is left and go on.
            for request in batch:
                request.fail(lost(exc) if is_connection_error(exc) else exc)
            last = 0
        settle(batch)
        if last:
            self._committed(last)

    async def _write_units(self) -> None:
        """Write the units at the head of the queue, in one transaction on the thread."""
        units = self._take_units()
        try:
            last = await self._thread.write_units(units, self._inline)
        except Exception as exc:
            for unit in units:
                unit.fail(lost(exc) if is_connection_error(exc) else exc)
            last = 0
        settle(units)
        for unit in units:
            if unit.outcome is not None and unit.outcome[0]:
                for result in unit.outcome[1]:
                    self.saw(result.stream_id, result.version)
        if last:
            self._committed(last)

    def _take_units(self) -> list[Unit]:
        """The units at the head of the queue: up to the cap, each event id and each
        idempotency key at most once (a second would only find it taken and roll back)."""
        units: list[Unit] = []
        ids: set[uuid.UUID] = set()
        keys: set[str] = set()
        count = 0
        pending = self._pending
        while pending:
            unit = pending[0]
            if not isinstance(unit, Unit):
                break
            if unit.future.done():  # its caller gave up before it was written
                pending.popleft()
                continue
            mine = unit.event_ids
            key = unit.idempotency.key if unit.idempotency is not None else None
            if units and (count + unit.size > self._max_events or mine & ids or key in keys):
                break
            pending.popleft()
            units.append(unit)
            ids |= mine
            if key is not None:
                keys.add(key)
            count += unit.size
        return units

    def _notify_due(self) -> None:
        self._timer = None
        self._nudge()

    def _take(self) -> list[Request]:
        """The next batch: up to the cap, each event id at most once, up to a job."""
        batch: list[Request] = []
        ids: set[uuid.UUID] = set()
        count = 0
        pending = self._pending
        while pending:
            request = pending[0]
            if not isinstance(request, Request):
                break
            if request.future.done():  # its caller gave up before it was written
                pending.popleft()
                continue
            mine = {event.event_id for event in request.events}
            if batch and (count + len(request.events) > self._max_events or mine & ids):
                # An id twice in one batch would fail the insert: the later append (a retry
                # racing its original) waits for the next batch and is settled there.
                break
            pending.popleft()
            batch.append(request)
            ids |= mine
            count += len(request.events)
        return batch

    async def _write(self, batch: list[Request]) -> int:
        """Write the batch, each request settled; return the last position committed."""
        if not batch:
            return 0
        inline = self._inline
        if inline:
            return await self._thread.write(batch, inline)
        try:
            known = [self._known(request) for request in batch]
            written, others = await self._direct.write(batch, known=known)
        except Exception as exc:
            if is_connection_error(exc):
                await self._direct.close()
            raise
        last = 0
        for item in written:
            item.request.resolve(item.result)
            self.saw(item.request.stream_id, item.result.version)
            last = max(last, item.result.position)
        if others:
            last = max(last, await self._thread.write(others, inline))
        return last

    async def _announce(self) -> None:
        """Tell other processes the log grew (a hint: they re-read the log anyway).

        Only if another session listens; the answer is trusted for ``_LISTENERS_FOR``
        seconds, so a process that starts listening may hear of commits that much later
        (it reads the log when it starts, and polls meanwhile).
        """
        if self._announced >= self._latest:
            return
        position = self._latest
        now = asyncio.get_running_loop().time()
        try:
            if now >= self._listened_until:
                own = self._own_listener()
                others = await self._direct.listeners(self._channel, besides=own)
                self._listened = others > 0
                self._listened_until = now + _LISTENERS_FOR
            if self._listened:
                await self._direct.notify(self._channel, position)
        except Exception as exc:
            if is_connection_error(exc):
                await self._direct.close()
            # Readers in other processes fall back to polling; nothing is lost.
            _log.warning("NOTIFY failed (readers will poll): %s", exc)
        self._announced = position
        self._notify_at = now + self._notify_interval
