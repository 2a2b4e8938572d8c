"""Idempotency keys in a dict: for tests and examples."""

from __future__ import annotations

from datetime import timedelta

from twofold.adapters._idempotency import (
    DEFAULT_KEEP_FOR,
    PRUNE_EVERY,
    check_keep_for,
    check_key,
    check_put,
)
from twofold.adapters.memory._keys import KeyTable
from twofold.adapters.memory.event_store import InMemoryEventStore

__all__ = ["InMemoryIdempotencyStore"]


class InMemoryIdempotencyStore:
    """The IdempotencyStore port in memory: the first answer stored for a key wins, for
    ``keep_for`` (default 24 hours; see ``twofold.adapters._idempotency``).

    ``InMemoryIdempotencyStore(store)`` shares the keys of an InMemoryEventStore, which
    stores a command's key with its events (``append_streams``): use it so with the
    IdempotencyMiddleware. Without a store it keeps keys of its own.
    """

    def __init__(
        self, store: InMemoryEventStore | None = None, *, keep_for: timedelta = DEFAULT_KEEP_FOR
    ) -> None:
        if store is not None and not isinstance(store, InMemoryEventStore):
            raise TypeError(
                "InMemoryIdempotencyStore shares the keys of an InMemoryEventStore: pass "
                f"InMemoryIdempotencyStore(store), not a {type(store).__name__}"
            )
        self._keep_for = check_keep_for(keep_for)
        self._seconds = self._keep_for.total_seconds()
        self._keys = store._keys if store is not None else KeyTable()
        self._puts = 0

    @property
    def keep_for(self) -> timedelta:
        return self._keep_for

    async def get(self, key: str) -> tuple[str, bytes] | None:
        check_key(key)
        return self._keys.get(key, self._seconds)

    async def put(self, key: str, fingerprint: str, result: bytes) -> tuple[str, bytes]:
        check_put(key, fingerprint, result)
        stored = self._keys.put(key, fingerprint, result, self._seconds)
        self._puts += 1
        if self._puts % PRUNE_EVERY == 0:
            await self.prune()
        return stored

    async def prune(self) -> int:
        """Delete up to PRUNE_BATCH of the keys kept longer than ``keep_for``; how many."""
        return self._keys.prune(self._seconds)
