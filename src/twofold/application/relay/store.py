"""The RelayStore port: where a relay keeps its checkpoint and its parked messages.

One checkpoint per destination: every event at or below ``position`` is acknowledged by the
broker or parked, and ``sequence`` is the last sequence number used for that destination. A
parked message is an event the broker refused for good, or a later event of its stream
(which waits behind it so the stream's order holds).

The store may live in the event store's database, in tables of its own (created when
missing, under names starting with ``relay_``). ``twofold.testing.RelayStoreContract`` checks
every adapter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

__all__ = ["ParkedMessage", "RelayCheckpoint", "RelayStore"]


@dataclasses.dataclass(frozen=True, slots=True)
class RelayCheckpoint:
    destination: str
    position: int = 0
    sequence: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class ParkedMessage:
    destination: str
    position: int
    stream_id: str
    sequence: int | None
    """The number it was published under before the broker refused it; None when it waited
    behind an earlier parked event of its stream and was never published."""
    error: str
    parked_at: datetime


class RelayStore(Protocol):
    async def prepare(self, destination: str) -> RelayCheckpoint:
        """Create the tables and the destination's checkpoint (0, 0) when missing; return it."""
        ...

    async def checkpoint(self, destination: str) -> RelayCheckpoint: ...

    async def advance(self, destination: str, *, position: int, sequence: int) -> None:
        """Store the checkpoint; it never moves back (a lower position or sequence than the
        stored one is left as it is)."""
        ...

    async def park(self, messages: Sequence[ParkedMessage]) -> None:
        """Keep these parked messages; one already parked (destination, position) stays."""
        ...

    async def parked(self, destination: str, stream_id: str | None = None) -> list[ParkedMessage]:
        """Parked messages in position order, of one stream or of all."""
        ...

    async def release(
        self, destination: str, positions: Sequence[int], *, sequence: int | None = None
    ) -> None:
        """Forget these parked messages and, in the same transaction, raise the checkpoint's
        sequence to ``sequence`` (the numbers they were published again under)."""
        ...

    async def close(self) -> None: ...
