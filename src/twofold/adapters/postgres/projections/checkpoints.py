"""Checkpoints heard across processes: read-your-writes when projections run elsewhere.

An API process that does not run the projections (``TWOFOLD_PROJECTIONS=off``) still has
to wake a query waiting for ``min_position`` the moment a worker commits that far. After
each batch commit of an active copy, the writing process sends ``NOTIFY`` with a JSON
payload ``{"<projection>": <checkpoint>, ...}``; every process that watches checkpoints
LISTENs, and calls its callbacks (``PositionTracker.advance``) for each entry.

Notifications are paced (see ``_listener`` for why NOTIFY is sent after the commit, never
in it): the first checkpoint after a quiet spell is sent at once, those that follow within
``interval`` share one notification at its end, carrying the latest checkpoint of each
projection. Watchers read the stored checkpoints when they start listening and after every
reconnection, so a notification lost while not listening costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from psycopg import AsyncConnection

from twofold.adapters.postgres._listener import ListenLoop
from twofold.adapters.postgres._pool import ConnectionPool
from twofold.application.failure import RECONNECT, RetryPolicy

__all__ = ["CheckpointCallback", "CheckpointNotifier", "CheckpointWatcher", "checkpoint_channel"]

CheckpointCallback = Callable[[str, int], None]
NOTIFY_RETRY = RetryPolicy(RECONNECT.backoff, attempts=5)
"""A NOTIFY that fails is tried 5 more times (the next commit sends its own; watchers
also poll), with the reconnection backoff."""
_log = logging.getLogger("twofold.postgres")
_decode = msgspec.json.Decoder(dict[str, int]).decode
_encode = msgspec.json.Encoder().encode


def checkpoint_channel(schema: str) -> str:
    """``twofold-views-<schema>``: the hyphens keep it apart from the event store's channel
    (``twofold_<schema>``, an identifier) whatever the schema is called."""
    name = f"twofold-views-{schema}"
    return name if len(name) <= 63 else "twofold-views-" + hashlib.sha1(schema.encode()).hexdigest()


class CheckpointNotifier:
    """Sends the latest checkpoints on the channel, at most one notification per interval."""

    def __init__(self, pool: ConnectionPool, channel: str, *, interval: float) -> None:
        self._pool = pool
        self._channel = channel
        self._interval = interval
        self._pending: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def poke(self, projection: str, checkpoint: int) -> None:
        self._pending[projection] = max(checkpoint, self._pending.get(projection, 0))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="twofold-checkpoint-notify")

    async def _run(self) -> None:
        failures = 0
        while self._pending:
            pending, self._pending = self._pending, {}
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(
                        "SELECT pg_notify(%s, %s)", (self._channel, _encode(pending).decode())
                    )
                failures = 0
            except Exception as exc:
                for name, position in pending.items():  # keep them for the next attempt
                    self._pending[name] = max(position, self._pending.get(name, 0))
                if NOTIFY_RETRY.exhausted(failures):
                    _log.warning("checkpoint NOTIFY failed %d times, giving up: %s", failures, exc)
                    return
                _log.warning("checkpoint NOTIFY failed, retrying: %s", exc)
                await asyncio.sleep(NOTIFY_RETRY.delay(failures))
                failures += 1
                continue
            if self._interval > 0:
                await asyncio.sleep(self._interval)  # commits meanwhile share the next one

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            # Let the last checkpoints out: watchers learn how far this process got.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), self._interval + 1.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class CheckpointWatcher:
    """One LISTEN connection; calls every callback with each checkpoint it hears of."""

    def __init__(
        self, url: str, channel: str, load: Callable[[], Awaitable[dict[str, int]]]
    ) -> None:
        self._load = load
        self._callbacks: list[CheckpointCallback] = []
        self._loop = ListenLoop(
            url,
            channel,
            name="twofold-checkpoint-watch",
            on_listen=self._listening,
            on_notify=self._heard,
        )

    async def add(self, callback: CheckpointCallback) -> None:
        """Call ``callback`` from now on; returns once listening, after telling it the
        stored checkpoints."""
        self._callbacks.append(callback)
        await self._loop.start()
        for name, position in (await self._load()).items():
            self._call(callback, name, position)

    async def _listening(self, conn: AsyncConnection[Any], first: bool) -> None:
        if not first:  # checkpoints may have moved while not listening
            self._deliver(await self._load())

    def _heard(self, payload: str) -> None:
        try:
            positions = _decode(payload)
        except msgspec.DecodeError:
            _log.warning("ignoring checkpoint notification %r", payload)
            return
        self._deliver(positions)

    def _deliver(self, positions: dict[str, int]) -> None:
        for name, position in positions.items():
            for callback in self._callbacks:
                self._call(callback, name, position)

    @staticmethod
    def _call(callback: CheckpointCallback, name: str, position: int) -> None:
        try:
            callback(name, position)
        except Exception:
            _log.exception("checkpoint callback %r failed", callback)

    async def close(self) -> None:
        await self._loop.close()
