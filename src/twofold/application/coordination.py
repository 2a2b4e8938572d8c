"""Who runs which projection: a port, and its in-process implementation.

Several processes may share one read store (``twofold serve --workers N``, ``twofold
worker``, a library user's own processes). Whatever the backend, each projection must be
applied in exactly one process at a time (two runners on one store apply events twice),
and every process must follow the checkpoints, so that a query with ``min_position`` holds
in whichever process answers it. ``Coordination`` is that promise; ``bootstrap`` picks the
implementation from the read store's URL, and ``App`` starts and stops it:

- ``InProcess`` (here): the views are this process's alone (memory, ``sqlite://:memory:``);
  it runs its projections itself.
- a file lock on one host (``twofold.adapters.sqlite.coordination``);
- a lease per projection (``twofold.adapters.postgres.projections.coordination``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from twofold.application.app import App

__all__ = ["Coordination", "InProcess"]


class Coordination(Protocol):
    """How the processes sharing a read store divide its projections."""

    shared: bool
    """Whether other processes can share the read store (so also run its projections)."""

    async def start(self, app: App, *, run: Collection[str]) -> None:
        """Join the processes of ``app``'s read store: run, or contend for, the projections
        named in ``run`` (empty: run none, only follow the checkpoints)."""
        ...

    async def close(self) -> None:
        """Stop the projections this process runs (no commit follows) and leave."""
        ...

    def runs(self, projection: str) -> bool:
        """Whether this process applies ``projection`` now."""
        ...

    async def attended(self, projection: str) -> bool:
        """Whether some process (this one or another) applies ``projection`` now."""
        ...


class InProcess:
    """Views private to this process: it runs the projections it is asked to run."""

    shared = False

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, app: App, *, run: Collection[str]) -> None:
        for name in run:
            runner = app.runner(name)
            self._running.add(name)
            # Prepared by App.start a moment ago: no need to read the state again.
            task = asyncio.create_task(runner.supervise(reload=False), name=f"run-{name}")
            self._tasks.append(task)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._running.clear()

    def runs(self, projection: str) -> bool:
        return projection in self._running

    async def attended(self, projection: str) -> bool:
        return projection in self._running
