"""The threads behind a SQLite store: one writer that commits in groups, one reader.

Each thread owns its sqlite3 connection; the event loop only puts jobs on a queue and awaits
futures, so it never waits on the disk (DESIGN 8). A thread takes every job that is queued
when it wakes up, runs them as one batch, and hands all the answers of a batch to each event
loop with a single ``call_soon_threadsafe``: one cross-thread wakeup per batch, not per job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from twofold.errors import EventStoreError, StoreClosedError, TwofoldError

__all__ = ["BatchLike", "Notifier", "Reader", "Writer"]

T = TypeVar("T")


class BatchLike(Protocol):
    """What the writer needs of the state its jobs share within one transaction."""

    appended: bool  # did this transaction append events (then subscribers are woken)

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write what the jobs left pending; called once, just before COMMIT."""
        ...


B = TypeVar("B", bound=BatchLike)

# Bounds one transaction; the queue holds the rest for the next one.
MAX_BATCH = 1024

Loop = asyncio.AbstractEventLoop
Outcome = tuple["asyncio.Future[Any]", bool, Any]


@dataclass(slots=True)
class _Job:
    op: Callable[..., Any]
    future: asyncio.Future[Any]
    loop: Loop


class Notifier:
    """Wakes in-process subscribers after each commit that appended events.

    ``generation`` counts those commits. A subscriber notes it before reading and waits only
    if it is unchanged, so a commit between its read and its wait is never missed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._waiters: dict[Loop, list[asyncio.Future[None]]] = {}
        self._closed = False

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def waiter(self, seen: int) -> asyncio.Future[None] | None:
        """A future resolved by the next commit; None if one happened since ``seen``."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed or self._generation != seen:
                return None
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(loop, []).append(future)
            return future

    def discard(self, future: asyncio.Future[None]) -> None:
        with self._lock:
            waiting = self._waiters.get(future.get_loop())
            if waiting is not None and future in waiting:
                waiting.remove(future)

    def fire(self) -> dict[Loop, list[asyncio.Future[None]]]:
        """Count a commit and take the waiters; the caller resolves them on their loops."""
        with self._lock:
            self._generation += 1
            waiters, self._waiters = self._waiters, {}
        return waiters

    def wake(self) -> None:
        """Wake every waiter now, as a commit would (for commits of other processes)."""
        _dispatch({}, self.fire())

    def close(self) -> None:
        with self._lock:
            self._closed = True
        _dispatch({}, self.fire())


def _deliver(outcomes: list[Outcome], waiters: list[asyncio.Future[None]]) -> None:
    # Runs on the event loop. A future may be done already: its awaiting task was cancelled.
    for future, ok, value in outcomes:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _dispatch(
    outcomes: dict[Loop, list[Outcome]], waiters: dict[Loop, list[asyncio.Future[None]]]
) -> None:
    # One call_soon_threadsafe per loop and batch: the whole batch's answers and the
    # subscribers' wakeups travel together.
    for loop in outcomes.keys() | waiters.keys():
        # RuntimeError: that loop is closed, so nobody can await its futures any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_deliver, outcomes.get(loop, []), waiters.get(loop, []))


def _group(results: list[tuple[_Job, bool, Any]]) -> dict[Loop, list[Outcome]]:
    by_loop: dict[Loop, list[Outcome]] = {}
    for job, ok, value in results:
        by_loop.setdefault(job.loop, []).append((job.future, ok, value))
    return by_loop


class _Delivery:
    """The answers of one batch, handed to their event loops at most once."""

    __slots__ = ("_notifier", "_results")

    def __init__(
        self, results: list[tuple[_Job, bool, Any]], notifier: Notifier | None = None
    ) -> None:
        self._results: list[tuple[_Job, bool, Any]] | None = results
        self._notifier = notifier  # set when the batch appended: subscribers wake with it

    def __call__(self) -> None:
        if self._results is None:
            return
        results, self._results = self._results, None
        _dispatch(_group(results), {} if self._notifier is None else self._notifier.fire())


class _Worker(threading.Thread):
    """A thread with its own connection that runs queued jobs a batch at a time."""

    def __init__(self, name: str, connect: Callable[[], sqlite3.Connection]) -> None:
        # Daemon: a store that was never closed must not keep the interpreter alive. Killing
        # it mid-write is a crash, which SQLite survives, and unanswered jobs were never
        # acknowledged.
        super().__init__(name=name, daemon=True)
        self._connect = connect
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = False
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.finished: concurrent.futures.Future[None] = concurrent.futures.Future()

    def _submit(self, op: Callable[..., Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # Under the lock so that no job is queued behind the stop sentinel and left unanswered.
        with self._lock:
            if self._stopping:
                raise StoreClosedError()
            self._queue.put(_Job(op, future, loop))
        return future

    def stop(self) -> None:
        """Finish the queued jobs, then close the connection and end the thread."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._queue.put(None)

    def run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self.ready.set_exception(exc)
            self.finished.set_result(None)
            return
        self.ready.set_result(None)
        try:
            self._serve(conn)
        finally:
            conn.close()
            self._on_exit()
            self.finished.set_result(None)

    def _on_exit(self) -> None:
        """Release what the thread holds besides its connection."""

    def _serve(self, conn: sqlite3.Connection) -> None:
        # `previous`: answers of a committed batch not yet handed over (see Writer._run).
        previous: _Delivery | None = None
        try:
            while True:
                if previous is None:
                    first = self._queue.get()
                else:
                    try:
                        first = self._queue.get_nowait()
                    except queue.Empty:
                        previous()  # nothing to overlap with: answer now, then wait
                        previous = None
                        continue
                if first is None:
                    return
                jobs, stop = self._drain(first)
                try:
                    previous = self._run(conn, jobs, previous)
                except Exception as exc:
                    # Even a broken connection or a bug must not leave callers waiting
                    # forever; the thread goes on, so later jobs get an error, not silence.
                    if previous is not None:
                        previous()
                    previous = _Delivery([(job, False, _failure(exc)) for job in jobs])
                if stop:
                    return
        finally:
            if previous is not None:
                previous()

    def _drain(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and the jobs queued behind it; True if the stop sentinel came too."""
        jobs = [first]
        while len(jobs) < MAX_BATCH:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return self._live(jobs), True
            jobs.append(job)
        return self._live(jobs), False

    @staticmethod
    def _live(jobs: list[_Job]) -> list[_Job]:
        # A job whose caller was cancelled before it started is dropped: nobody waits for it.
        return [job for job in jobs if not job.future.cancelled()]

    def _run(
        self, conn: sqlite3.Connection, jobs: list[_Job], previous: _Delivery | None
    ) -> _Delivery | None:
        """Run one batch; deliver ``previous`` by the end; return answers still to deliver."""
        raise NotImplementedError


def _is_busy(exc: BaseException) -> bool:
    """Another connection holds the lock SQLite needs (SQLITE_BUSY or an extended code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_BUSY


def _failure(exc: BaseException) -> EventStoreError:
    if _is_busy(exc):
        error = EventStoreError(
            "the SQLite database stayed locked by another connection for longer than "
            "busy_timeout; nothing was changed, retry or raise busy_timeout"
        )
    else:
        error = EventStoreError(
            f"SQLite failed ({exc}); nothing was changed, retry and check the disk if it "
            "keeps failing"
        )
    error.__cause__ = exc
    return error


class Writer(_Worker, Generic[B]):
    """The one writer of a store: every queued write goes into one transaction and one fsync.

    ``new_batch(conn, ops, now_us)`` builds the state the jobs of one transaction share,
    after BEGIN. Each job runs on its own inside the transaction: a job that raises a
    TwofoldError must have changed nothing, and only it fails. Any other error rolls back
    the whole batch and fails each of its jobs.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        notifier: Notifier,
        new_batch: Callable[[sqlite3.Connection, list[Callable[..., Any]], int], B],
        *,
        busy_timeout: float,
        lock_path: str | None = None,
    ) -> None:
        super().__init__("twofold-sqlite-writer", connect)
        self._notifier = notifier
        self._new_batch = new_batch
        self._busy_timeout = busy_timeout
        # Writers of several processes queue on this file lock (in the kernel) instead of
        # polling SQLite's lock: the next writer starts the moment the last one commits.
        self._lock_path = lock_path
        self._lock_fd: int | None = None

    def _take_file_lock(self, previous: _Delivery | None) -> bool:
        """Queue for the cross-process write lock; answer the last batch before waiting."""
        if self._lock_path is None:
            return False
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if previous is not None:
                previous()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        return True

    def _drop_file_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _on_exit(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _begin(self, conn: sqlite3.Connection, previous: _Delivery | None) -> None:
        """BEGIN IMMEDIATE: take the file's write lock, waiting up to busy_timeout for it.

        The connection's own busy_timeout is 0 (see connect_writer), so a lock held by
        another process is noticed at once: the previous batch's callers are answered
        before the wait, not after it.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        if previous is not None:
            previous()
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.0005
        while True:
            time.sleep(pause)
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            pause = min(pause * 2, 0.02)

    def submit(self, op: Callable[[sqlite3.Connection, B], T]) -> asyncio.Future[T]:
        return self._submit(op)

    def _run(
        self, conn: sqlite3.Connection, jobs: list[_Job], previous: _Delivery | None
    ) -> _Delivery | None:
        if not jobs:
            return previous
        results: list[tuple[_Job, bool, Any]] = []
        appended = False
        locked = False
        try:
            locked = self._take_file_lock(previous)
            # The write lock is held from here to COMMIT: what the batch reads below stays
            # true until then, whatever other processes try.
            self._begin(conn, previous)
            batch = self._new_batch(conn, [job.op for job in jobs], time.time_ns() // 1000)
            for job in jobs:
                try:
                    results.append((job, True, job.op(conn, batch)))
                except TwofoldError as exc:
                    results.append((job, False, exc))
            batch.flush(conn)
            # The previous batch is committed; its answers go out now, so its callers run
            # (holding the GIL) while this COMMIT waits for the disk without it. Delivering
            # right after the previous COMMIT would make this batch's work wait for them.
            if previous is not None:
                previous()
            conn.execute("COMMIT")
            appended = batch.appended
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(job, False, _failure(exc)) for job in jobs]
        finally:
            if locked:
                self._drop_file_lock()
            if previous is not None:
                previous()
        return _Delivery(results, self._notifier if appended else None)


class Reader(_Worker):
    """Runs reads on its own connection, so they never queue behind the writer's fsyncs."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        super().__init__("twofold-sqlite-reader", connect)

    def submit(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        return self._submit(op)

    def _run(
        self, conn: sqlite3.Connection, jobs: list[_Job], previous: _Delivery | None
    ) -> _Delivery | None:
        results: list[tuple[_Job, bool, Any]] = []
        for job in jobs:
            try:
                results.append((job, True, job.op(conn)))
            except TwofoldError as exc:
                results.append((job, False, exc))
            except Exception as exc:
                results.append((job, False, _failure(exc)))
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        _Delivery(results)()
        return None
