"""Rebuilds started over HTTP: each runs as a job that outlives the request that started it.

A job's progress is readable two ways:

- ``POST .../rebuild`` with ``Accept: text/event-stream`` answers with the job's progress as
  server-sent events on that very connection (``progress`` events, then ``done`` or
  ``failed``): this works whatever worker process answers, so the dashboard uses it;
- otherwise the POST answers 202 with the job and its ``Location``
  (``/admin/api/jobs/{id}``), polled for its state. Jobs live in the process that runs
  them: with ``twofold serve --workers N`` a poll may reach another worker, which answers
  404 saying so; follow the events instead.

A client that goes away does not stop a rebuild. The jobs of this process are kept until
it stops (the last ``KEEP`` finished ones).
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec

__all__ = ["Job", "JobState", "Jobs"]

KEEP = 50
"""Finished jobs remembered per process."""


class JobState(enum.Enum):
    """A job runs, then is done or failed::

    running ──▶ done
       └──────▶ failed
    """

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(msgspec.Struct, kw_only=True):
    """A rebuild started over HTTP, and how far it got."""

    id: str
    projection: str
    status: JobState = JobState.RUNNING
    done: int = 0
    """Events replayed so far."""
    total: int = 0
    """Events to replay (0 until the rebuild has counted them)."""
    checkpoint: int | None = None
    """The new copy's checkpoint, once done."""
    error: str | None = None
    """Why it failed."""
    started_at: float
    """Unix time."""
    finished_at: float | None = None


Rebuild = Callable[[Callable[[int, int], None]], Awaitable[int]]
"""Runs the rebuild, calling ``progress(done, total)``; returns the new checkpoint."""


class Jobs:
    """This process's rebuild jobs, one at a time per projection."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._followers: dict[str, set[asyncio.Event]] = {}

    def all(self) -> list[Job]:
        """This process's jobs, oldest first."""
        return list(self._jobs.values())

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def running(self, projection: str) -> Job | None:
        for job in self._jobs.values():
            if job.projection == projection and job.status is JobState.RUNNING:
                return job
        return None

    def start(self, projection: str, rebuild: Rebuild) -> Job:
        """Start rebuilding ``projection`` (the caller checked none runs)."""
        job = Job(id=uuid.uuid4().hex, projection=projection, started_at=time.time())
        self._jobs[job.id] = job
        self._followers[job.id] = set()
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int) -> None:
            # The rebuild may report from a thread of the store's: wake followers on the loop.
            job.done, job.total = done, total
            loop.call_soon_threadsafe(self._notify, job.id)

        async def run() -> None:
            try:
                job.checkpoint = await rebuild(progress)
                job.done = max(job.done, job.total)
                job.status = JobState.DONE
            except asyncio.CancelledError:
                job.status, job.error = JobState.FAILED, "the server stopped during the rebuild"
                raise
            except Exception as error:
                job.status, job.error = JobState.FAILED, f"{type(error).__name__}: {error}"
            finally:
                job.finished_at = time.time()
                self._notify(job.id)
                self._tasks.pop(job.id, None)
                self._forget_old()

        self._tasks[job.id] = asyncio.create_task(run(), name=f"rebuild {projection}")
        return job

    async def follow(self, job: Job) -> AsyncIterator[Job]:
        """The job each time it changes (progress is coalesced), ending with it finished."""
        changed = asyncio.Event()
        followers = self._followers.setdefault(job.id, set())
        followers.add(changed)
        try:
            yield job
            while job.status is JobState.RUNNING:
                await changed.wait()
                changed.clear()
                yield job
        finally:
            followers.discard(changed)

    def _notify(self, job_id: str) -> None:
        for changed in self._followers.get(job_id, ()):
            changed.set()

    async def close(self) -> None:
        """Cancel the running jobs (the server stops)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.status is not JobState.RUNNING]
        for job_id in finished[:-KEEP]:
            del self._jobs[job_id]
            self._followers.pop(job_id, None)
