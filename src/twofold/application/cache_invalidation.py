"""Projection commits drive the cache: what a runner calls after each read-store commit.

A runner wraps each batch's ``apply`` to learn which documents it touched, commits, and
then tells the invalidator (only for the active generation; a rebuild's copy is not
served)::

    apply, touched = recording(make_apply(...))
    await read_store.commit_batch(name, generation, apply, checkpoint=last.position, ...)
    positions.advance(name, last.position)
    await invalidator.committed(name, generation, after=previous_checkpoint,
                                checkpoint=last.position, touched=touched)

and, after ``read_store.switch`` (a rebuild, a reset) or after views changed without a new
checkpoint (dead letters released), ``await invalidator.reset(name, generation, checkpoint)``.

Invalidation never fails the runner: when the cache is away, the invalidations wait here
(merged, in order) and are delivered when it answers again, on the next commit or by the
retry task; past ``max_pending_keys`` documents they are replaced by a reset of the
projection's entries. Until then readers are protected by positions: a process that knows
a commit (``PositionTracker``) does not serve entries older than it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Set
from typing import Any

from twofold.application.cache import (
    CacheMetrics,
    CacheState,
    CacheStatus,
    Invalidation,
    ViewCache,
)
from twofold.application.failure import Backoff, CircuitBreaker
from twofold.application.views import ApplyBatch, Document, ViewTransaction
from twofold.records import RecordedEvent

__all__ = ["CacheInvalidator", "TouchRecorder", "recording"]

log = logging.getLogger("twofold.cache")


class TouchRecorder:
    """A ViewTransaction that notes the documents its handlers put or delete."""

    def __init__(self, inner: ViewTransaction, touched: dict[str, set[str]]) -> None:
        self._inner = inner
        self._touched = touched

    @property
    def record(self) -> RecordedEvent:
        return self._inner.record

    @record.setter
    def record(self, value: RecordedEvent) -> None:
        self._inner.record = value

    def get(self, collection: str, key: str) -> Document | None:
        return self._inner.get(collection, key)

    def put(self, collection: str, key: str, document: Document) -> None:
        self._inner.put(collection, key, document)
        self._touched.setdefault(collection, set()).add(key)

    def delete(self, collection: str, key: str) -> None:
        self._inner.delete(collection, key)
        self._touched.setdefault(collection, set()).add(key)

    def find(self, collection: str, where: Mapping[str, Any]) -> list[Document]:
        return self._inner.find(collection, where)


def recording(apply: ApplyBatch) -> tuple[ApplyBatch, dict[str, set[str]]]:
    """``apply`` wrapped to record the documents it touches, and the record it fills
    (``{collection: {key, ...}}``, as of the last run of ``apply``)."""
    touched: dict[str, set[str]] = {}

    def recorded(tx: ViewTransaction) -> None:
        touched.clear()
        apply(TouchRecorder(tx, touched))

    return recorded, touched


@dataclasses.dataclass
class _Pending:
    generation: int
    after: int
    checkpoint: int
    documents: dict[str, set[str]]
    reset: bool = False
    force: bool = False

    def size(self) -> int:
        return sum(len(keys) for keys in self.documents.values())


class CacheInvalidator:
    """Delivers projection commits to a ViewCache, in order, whatever the cache's health."""

    def __init__(
        self,
        cache: ViewCache,
        *,
        metrics: CacheMetrics | None = None,
        timeout: float = 1.0,
        breaker: CircuitBreaker | None = None,
        max_pending_keys: int = 100_000,
        retry_after: float = 0.5,
        max_retry_after: float = 10.0,
    ) -> None:
        self.cache = cache
        self.metrics = metrics if metrics is not None else CacheMetrics()
        self.timeout = timeout
        self.breaker = breaker or CircuitBreaker(
            failure_threshold=1, backoff=Backoff(initial=retry_after, maximum=max_retry_after)
        )
        self.max_pending_keys = max_pending_keys
        self.retry_after = retry_after
        self.max_retry_after = max_retry_after
        self._pending: dict[str, _Pending] = {}
        self._lock = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None
        self._closed = False

    async def committed(
        self,
        projection: str,
        generation: int,
        *,
        after: int,
        checkpoint: int,
        touched: Mapping[str, Set[str]],
    ) -> None:
        """A batch of ``projection``'s active ``generation`` committed positions ``after``
        (exclusive) to ``checkpoint``, touching ``touched``. Never raises for the cache."""
        async with self._lock:
            pending = self._pending.get(projection)
            if pending is None:
                pending = self._pending[projection] = _Pending(
                    generation, after, checkpoint, {c: set(k) for c, k in touched.items()}
                )
            else:
                if generation != pending.generation or after != pending.checkpoint:
                    pending.reset = True
                pending.generation = generation
                pending.checkpoint = checkpoint
                for collection, keys in touched.items():
                    pending.documents.setdefault(collection, set()).update(keys)
            if pending.size() > self.max_pending_keys:
                pending.reset = True
            if pending.reset:
                pending.documents.clear()
            await self._deliver(projection)

    async def reset(
        self, projection: str, generation: int, checkpoint: int, *, force: bool = False
    ) -> None:
        """Abandon ``projection``'s entries: its active copy is ``generation`` at
        ``checkpoint`` now (after a switch, or after views changed without a checkpoint).
        ``force``: even when the cache knows a later generation (``ViewCache.reset``)."""
        async with self._lock:
            self._pending[projection] = _Pending(
                generation, checkpoint, checkpoint, {}, reset=True, force=force
            )
            await self._deliver(projection)

    async def flush(self) -> bool:
        """Try now (whatever the breaker says) to deliver what waits; True when nothing
        waits any more."""
        async with self._lock:
            for projection in list(self._pending):
                await self._deliver(projection, force=True)
            return not self._pending

    @property
    def pending(self) -> int:
        """How many projections have invalidations waiting for the cache."""
        return len(self._pending)

    def status(self) -> CacheStatus:
        if not self._pending:
            return CacheStatus(CacheState.UP, "invalidations delivered")
        return CacheStatus(
            CacheState.DEGRADED,
            f"invalidations of {', '.join(sorted(self._pending))} wait for the cache "
            f"({self.breaker.status().last_error}); entries those commits outdated are not "
            "served by processes that know the commits, and expire after the TTL",
        )

    async def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None

    async def _deliver(self, projection: str, *, force: bool = False) -> None:
        pending = self._pending[projection]
        if not (self.breaker.allow() or force):
            self._schedule_retry()
            return
        try:
            async with asyncio.timeout(self.timeout):
                if pending.reset:
                    await self.cache.reset(
                        projection, pending.generation, pending.checkpoint, force=pending.force
                    )
                else:
                    await self.cache.invalidate(
                        Invalidation(
                            projection,
                            pending.generation,
                            pending.after,
                            pending.checkpoint,
                            pending.documents,
                        )
                    )
        except Exception as exc:
            self.breaker.failure(exc)
            self.metrics.add("errors")
            log.warning(
                "cache invalidation of %s through %d waits: %s",
                projection,
                pending.checkpoint,
                self.breaker.status().last_error,
            )
            self._schedule_retry()
            return
        self.breaker.success()
        self.metrics.add("invalidations")
        del self._pending[projection]

    def _schedule_retry(self) -> None:
        if self._closed or (self._retry is not None and not self._retry.done()):
            return
        self._retry = asyncio.get_running_loop().create_task(
            self._retry_loop(), name="twofold-cache-invalidation-retry"
        )

    async def _retry_loop(self) -> None:
        delay = self.retry_after
        while self._pending and not self._closed:
            await asyncio.sleep(delay)  # backoff while the cache is away
            async with self._lock:
                for projection in list(self._pending):
                    await self._deliver(projection, force=True)
            delay = min(delay * 2, self.max_retry_after)
