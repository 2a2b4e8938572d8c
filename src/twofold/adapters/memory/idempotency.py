"""Idempotency keys in a dict: for tests and examples."""

from __future__ import annotations

__all__ = ["InMemoryIdempotencyStore"]


class InMemoryIdempotencyStore:
    """The IdempotencyStore port in memory: the first answer stored for a key wins."""

    def __init__(self) -> None:
        self._answers: dict[str, tuple[str, bytes]] = {}

    async def get(self, key: str) -> tuple[str, bytes] | None:
        _check_key(key)
        return self._answers.get(key)

    async def put(self, key: str, fingerprint: str, result: bytes) -> tuple[str, bytes]:
        _check_key(key)
        if not isinstance(fingerprint, str) or not isinstance(result, bytes):
            raise TypeError("fingerprint must be a str and result must be bytes")
        return self._answers.setdefault(key, (fingerprint, result))


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"an idempotency key must be a non-empty str, got {key!r}")
