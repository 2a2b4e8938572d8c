"""The writer's lane on the event loop: libpq driven directly, without a thread.

For a process that appends one event at a time, the client's CPU per append sets the
throughput, and handing each append to a thread and its answer back costs more sleeps and
wake-ups than the statement costs (measured, one writer: 7.5 context switches and about
190 µs of client CPU per append through a thread, against 1.5 and 155 µs this way; a bare
synchronous INSERT takes 1.5 and 120 µs). So batches that need nothing but the append
statement are sent from the event loop itself: the statement goes out non-blocking, the
loop watches the socket (``add_reader``), and the result is read when it is there. The
loop never waits on the database (DESIGN 8).

A batch of several appends is pipelined (libpq pipeline mode): each append's prepared
statement, then one Sync, sent at once. Everything before a Sync is one implicit
transaction, so the batch is one round trip and one commit, and the server runs the same
plain INSERT per append as for a lone one (measured: about 36 µs of server CPU per event,
against about 100 µs through the plpgsql ``append_batch()``).

Only the usual outcome is handled here: every append written. Anything else (a version
mismatch, a unique violation, any other error but a lost connection) hands the batch's
appends to the writer's thread, which has the whole of ``_batch``: settling retries,
conflicts and failures, one append at a time if need be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import pq, sql

from twofold.adapters.postgres._listener import LISTENERS, presence_key
from twofold.adapters.postgres._pool import connect
from twofold.adapters.postgres.append.batch import build_result
from twofold.adapters.postgres.append.requests import Request, Written
from twofold.adapters.postgres.append.sql import (
    decode_rows,
    encode_append,
    expected_code,
    statements,
)

__all__ = ["LoopWriter"]

Results = list[pq.abc.PGresult]
# Told once, on the loop, how the statement in flight ended: its results, or the error.
Done = Callable[[Results | None, BaseException | None], None]


class LoopWriter:
    """One connection, one statement in flight, driven by the event loop."""

    def __init__(self, url: str, schema: sql.Identifier) -> None:
        self._url = url
        self._schema = schema
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._waiting: Done | None = None
        self._results: Results = []
        self._pipelined = False  # the statement in flight is a pipeline, ended by a Sync
        self._last: pq.abc.PGresult | None = None  # in a pipeline: the statement's last result

    @property
    def connection(self) -> psycopg.AsyncConnection[Any] | None:
        return self._conn

    @property
    def idle(self) -> bool:
        """Open, and no statement in flight: ``send_one`` may be called."""
        conn = self._conn
        return conn is not None and not conn.broken and self._waiting is None

    @property
    def busy(self) -> bool:
        """A statement is in flight."""
        return self._waiting is not None

    def send_one(
        self,
        request: Request,
        done: Callable[[Written | None, BaseException | None], None],
        *,
        known: bool = False,
    ) -> None:
        """Send one append now; ``done`` is told, from the loop's reading of the socket,
        ``(Written, None)`` when it was written, ``(None, None)`` when the thread must
        look (a version mismatch or an error), or ``(None, exc)`` when the connection
        failed. Only while ``idle``; this is the one-writer path, a loop turn shorter
        than ``write``."""
        send = _send_one(request, known)

        def finished(results: Results | None, exc: BaseException | None) -> None:
            if results is None:
                done(None, exc)
            else:
                done(_written(request, results), None)

        self._start(send, finished)

    async def write(
        self, batch: list[Request], *, known: Sequence[bool]
    ) -> tuple[list[Written], list[Request]]:
        """Write the batch as one transaction; return what was written, and the appends for
        the thread (a version mismatch, or all of them after an error). ``known[i]``:
        append ``i`` goes to a stream known to be at the version it expects
        (``_single._KNOWN``).

        A batch of several is pipelined: every append's prepared statement, then one Sync,
        in one round trip and one implicit transaction (so one commit). If any statement
        fails (a unique violation: another writer got there first), the whole transaction
        rolls back and the batch goes to the thread, which settles it.

        Raises a connection error (OperationalError) if the connection was lost: the
        batch may or may not be stored.
        """
        await self._open()
        if len(batch) == 1:
            one = _written(batch[0], await self._send(_send_one(batch[0], known[0])))
            if one is None:
                return [], batch  # a mismatch (no row) or an error: the thread looks
            return [one], []
        sends = [_send_one(request, k) for request, k in zip(batch, known, strict=True)]

        def send(pg: pq.abc.PGconn) -> None:
            pg.enter_pipeline_mode()
            for one in sends:
                one(pg)
            pg.pipeline_sync()

        self._pipelined = True
        answers = await self._send(send)  # the last result of each statement
        if len(answers) != len(batch) or any(
            result.status != pq.ExecStatus.TUPLES_OK for result in answers
        ):
            return [], batch  # rolled back, all of it: the thread settles the batch
        written: list[Written] = []
        others: list[Request] = []
        for request, result in zip(batch, answers, strict=True):
            one = _written(request, [result])
            if one is None:
                others.append(request)  # its stream was not at the version it expected
            else:
                written.append(one)
        return written, others

    async def notify(self, channel: str, position: int) -> None:
        await self._open()
        assert self._conn is not None
        # Not durable: a NOTIFY holds a database-wide lock from its commit until the commit
        # is flushed, and a hint needs no flush (readers re-read the log). One round trip.
        query = sql.SQL(
            "BEGIN; SET LOCAL synchronous_commit TO off; SELECT pg_notify({}, {}); COMMIT"
        ).format(sql.Literal(channel), sql.Literal(str(position)))
        text = query.as_bytes(self._conn)
        results = await self._send(lambda pg: pg.send_query(text))
        for result in results:
            if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
                raise psycopg.errors.error_from_result(result)

    async def listeners(self, channel: str, *, besides: int) -> int:
        """How many sessions but ``besides`` listen on ``channel`` (``_listener``)."""
        await self._open()
        params = [presence_key(channel).encode(), str(besides).encode()]
        results = await self._send(lambda pg: pg.send_query_params(LISTENERS, params))
        result = results[-1]
        if result.status != pq.ExecStatus.TUPLES_OK:
            raise psycopg.errors.error_from_result(result)
        return int(result.get_value(0, 0) or b"0")

    # -- the connection -------------------------------------------------------------------

    async def _open(self) -> None:
        if self._conn is not None and not self._conn.broken:
            return
        await self.close()
        conn = await connect(self._url, role="writer")
        try:
            pg = conn.pgconn
            pg.nonblocking = 1
            self._loop = asyncio.get_running_loop()
            self._fd = pg.socket
            self._loop.add_reader(self._fd, self._readable)
            self._conn = conn
            for name, query, oids in statements(self._schema, conn):
                results = await self._send(_prepare(name, query, oids))
                if results[-1].status != pq.ExecStatus.COMMAND_OK:
                    raise psycopg.errors.error_from_result(results[-1])
        except BaseException:
            await self.close()
            await conn.close()
            raise

    async def close(self) -> None:
        self._unwatch()
        self._fail(psycopg.OperationalError("the connection was closed"))
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def _send(self, send: Callable[[pq.abc.PGconn], None]) -> asyncio.Future[Results]:
        assert self._loop is not None
        future: asyncio.Future[Results] = self._loop.create_future()

        def finished(results: Results | None, exc: BaseException | None) -> None:
            if future.done():
                return
            if results is None:
                future.set_exception(exc or psycopg.OperationalError("no results"))
            else:
                future.set_result(results)

        self._start(send, finished)
        return future

    def _start(self, send: Callable[[pq.abc.PGconn], None], done: Done) -> None:
        assert self._conn is not None and self._loop is not None and self._waiting is None
        pg = self._conn.pgconn
        send(pg)
        self._waiting = done
        if pg.flush():
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        assert self._conn is not None and self._loop is not None
        try:
            done = self._conn.pgconn.flush() == 0
        except psycopg.Error as exc:
            done = True
            self._fail(exc)
        if done:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        pg = conn.pgconn
        try:
            pg.consume_input()
            while not pg.is_busy():
                result = pg.get_result()
                if self._pipelined:
                    # A statement's results end with a None (kept: its last result); the
                    # Sync's result ends the pipeline.
                    if result is None:
                        if self._last is not None:
                            self._results.append(self._last)
                        self._last = None
                    elif result.status == pq.ExecStatus.PIPELINE_SYNC:
                        pg.exit_pipeline_mode()
                        self._pipelined = False
                        self._finish()
                        return
                    else:
                        self._last = result
                    continue
                if result is None:
                    self._finish()
                    return
                self._results.append(result)
        except psycopg.Error as exc:
            self._fail(exc)
        if pg.status != pq.ConnStatus.OK:
            self._fail(psycopg.OperationalError("the connection to PostgreSQL was lost"))

    def _finish(self) -> None:
        waiting, self._waiting = self._waiting, None
        results, self._results = self._results, []
        if waiting is not None:
            waiting(results, None)

    def _fail(self, exc: BaseException) -> None:
        waiting, self._waiting = self._waiting, None
        self._results = []
        self._pipelined = False
        self._last = None
        if waiting is not None:
            waiting(None, exc)
        conn = self._conn
        if conn is not None and conn.pgconn.status != pq.ConnStatus.OK:
            self._unwatch()  # a dead socket stays readable: stop watching it

    def _unwatch(self) -> None:
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = -1


def _send_one(request: Request, known: bool) -> Callable[[pq.abc.PGconn], None]:
    """Sends one append's prepared statement (``_single``)."""
    name, params, formats = encode_append(
        request.stream_id, request.events, expected_code(request.expected), known=known
    )

    def send(pg: pq.abc.PGconn) -> None:
        pg.send_query_prepared(name, params, formats, 1)

    return send


def _written(request: Request, results: Results) -> Written | None:
    """What one append's statement wrote; None for a mismatch (no row) or an error."""
    result = results[-1]
    if result.status != pq.ExecStatus.TUPLES_OK or not result.ntuples:
        return None
    return Written(request, build_result(request.stream_id, request.events, decode_rows(result)))


def _prepare(name: bytes, query: bytes, oids: tuple[int, ...]) -> Callable[[pq.abc.PGconn], None]:
    def send(pg: pq.abc.PGconn) -> None:
        pg.send_prepare(name, query, oids)

    return send
