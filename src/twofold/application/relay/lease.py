"""The RelayLease port: one relay per destination is active at a time.

Every process that may relay to a destination (``twofold relay``, ``twofold serve`` with
``TWOFOLD_RELAY=run``) holds or waits for that destination's lease. The holder publishes;
the others wait, and one of them takes over when the holder dies (its lease goes with its
process). ``bootstrap`` picks the implementation from the event store's URL, because the
relay's checkpoint lives in the event store's database:

- ``InProcessLease`` (here): events in this process's memory, nobody else can relay them;
- a file lock next to the SQLite event store (``twofold.adapters.sqlite.relay_lease``);
- a PostgreSQL advisory lock (``twofold.adapters.postgres.relay_lease``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["InProcessLease", "RelayLease"]


class RelayLease(Protocol):
    """The right to relay to one destination."""

    async def acquire(self) -> None:
        """Return once this process holds the lease (waiting while another one holds it)."""
        ...

    async def lost(self) -> None:
        """Return if the lease is lost while held (its connection broke); else never."""
        ...

    async def release(self) -> None:
        """Give the lease up (another process may take it at once); idempotent."""
        ...


class InProcessLease:
    """No other process can relay this store: the lease is always this process's."""

    async def acquire(self) -> None:
        return None

    async def lost(self) -> None:
        await asyncio.Event().wait()  # never: nobody else can take it

    async def release(self) -> None:
        return None
