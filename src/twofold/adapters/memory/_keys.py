"""The idempotency keys of an in-memory event store: what its table would be on a disk."""

from __future__ import annotations

import time

from twofold.adapters._idempotency import PRUNE_BATCH

__all__ = ["KeyTable"]


class KeyTable:
    """key -> (fingerprint, answer, monotonic time stored), oldest first.

    The event store writes keys with the events of a command (``append_streams``); the
    InMemoryIdempotencyStore on the same store reads them and stores the answers of
    commands that appended nothing. The first answer stored for a key wins until it is
    older than the ``keep_for`` of whoever asks.
    """

    def __init__(self) -> None:
        self._answers: dict[str, tuple[str, bytes, float]] = {}

    def get(self, key: str, keep_for: float) -> tuple[str, bytes] | None:
        stored = self._answers.get(key)
        if stored is None or stored[2] < time.monotonic() - keep_for:
            return None
        return stored[0], stored[1]

    def put(self, key: str, fingerprint: str, answer: bytes, keep_for: float) -> tuple[str, bytes]:
        """Store the answer unless the key is taken; return what is stored for the key."""
        stored = self.get(key, keep_for)
        if stored is not None:
            return stored
        self._answers.pop(key, None)  # re-inserted last: the dict stays oldest first
        self._answers[key] = (fingerprint, answer, time.monotonic())
        return fingerprint, answer

    def prune(self, keep_for: float) -> int:
        """Delete up to PRUNE_BATCH of the keys kept longer than ``keep_for``; how many."""
        cutoff = time.monotonic() - keep_for
        old: list[str] = []
        for key, stored in self._answers.items():
            if stored[2] >= cutoff or len(old) >= PRUNE_BATCH:
                break
            old.append(key)
        for key in old:
            del self._answers[key]
        return len(old)
