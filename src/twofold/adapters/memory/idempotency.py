"""Idempotency keys in a dict: for tests and examples."""

from __future__ import annotations

import time
from datetime import timedelta

from twofold.adapters._idempotency import (
    DEFAULT_KEEP_FOR,
    PRUNE_BATCH,
    PRUNE_EVERY,
    check_keep_for,
    check_key,
    check_put,
)

__all__ = ["InMemoryIdempotencyStore"]


class InMemoryIdempotencyStore:
    """The IdempotencyStore port in memory: the first answer stored for a key wins, for
    ``keep_for`` (default 24 hours; see ``twofold.adapters._idempotency``)."""

    def __init__(self, *, keep_for: timedelta = DEFAULT_KEEP_FOR) -> None:
        self._keep_for = check_keep_for(keep_for).total_seconds()
        # key -> (fingerprint, result, monotonic time stored), oldest first
        self._answers: dict[str, tuple[str, bytes, float]] = {}
        self._puts = 0

    async def get(self, key: str) -> tuple[str, bytes] | None:
        check_key(key)
        stored = self._answers.get(key)
        if stored is None or stored[2] < time.monotonic() - self._keep_for:
            return None
        return stored[0], stored[1]

    async def put(self, key: str, fingerprint: str, result: bytes) -> tuple[str, bytes]:
        check_put(key, fingerprint, result)
        now = time.monotonic()
        stored = self._answers.get(key)
        if stored is None or stored[2] < now - self._keep_for:
            self._answers.pop(key, None)  # re-inserted last: the dict stays oldest first
            stored = self._answers[key] = (fingerprint, result, now)
            self._puts += 1
            if self._puts % PRUNE_EVERY == 0:
                await self.prune()
        return stored[0], stored[1]

    async def prune(self) -> int:
        """Delete up to PRUNE_BATCH of the keys kept longer than ``keep_for``; how many."""
        cutoff = time.monotonic() - self._keep_for
        old: list[str] = []
        for key, stored in self._answers.items():
            if stored[2] >= cutoff or len(old) >= PRUNE_BATCH:
                break
            old.append(key)
        for key in old:
            del self._answers[key]
        return len(old)

