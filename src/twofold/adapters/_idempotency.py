"""How long idempotency keys are kept, for every IdempotencyStore adapter.

A key's first answer is kept for ``keep_for`` (default 24 hours, as Stripe keeps its keys):
a retry within that time gets the first answer back; after it the key is forgotten, and a
command sent with it runs again (the aggregates' own rules, such as "the id exists", then
stand between it and a duplicate). Forgotten keys are deleted as new ones come in: every
``PRUNE_EVERY`` puts, at most ``PRUNE_BATCH`` of the oldest, so no put pays for a backlog.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = [
    "DEFAULT_KEEP_FOR",
    "PRUNE_BATCH",
    "PRUNE_EVERY",
    "check_keep_for",
    "check_key",
    "check_put",
]

DEFAULT_KEEP_FOR = timedelta(hours=24)
PRUNE_EVERY = 1000
PRUNE_BATCH = 1000


def check_keep_for(keep_for: object) -> timedelta:
    if not isinstance(keep_for, timedelta) or keep_for <= timedelta(0):
        raise ValueError(
            f"keep_for must be a positive timedelta (how long a key's answer is kept), "
            f"got {keep_for!r}"
        )
    return keep_for


def check_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"an idempotency key must be a non-empty str, got {key!r}")


def check_put(key: object, fingerprint: object, result: object) -> None:
    check_key(key)
    if not isinstance(fingerprint, str) or not isinstance(result, bytes):
        raise TypeError("fingerprint must be a str and result must be bytes")
