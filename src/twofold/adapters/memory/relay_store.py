"""An in-memory RelayStore, for tests and for a relay whose checkpoint need not survive."""

from __future__ import annotations

from collections.abc import Sequence

from twofold.application.relay.store import ParkedMessage, RelayCheckpoint

__all__ = ["MemoryRelayStore"]


class MemoryRelayStore:
    def __init__(self) -> None:
        self._checkpoints: dict[str, RelayCheckpoint] = {}
        self._parked: dict[tuple[str, int], ParkedMessage] = {}

    async def prepare(self, destination: str) -> RelayCheckpoint:
        return self._checkpoints.setdefault(destination, RelayCheckpoint(destination))

    async def checkpoint(self, destination: str) -> RelayCheckpoint:
        return self._checkpoints.get(destination, RelayCheckpoint(destination))

    async def advance(self, destination: str, *, position: int, sequence: int) -> None:
        now = await self.checkpoint(destination)
        self._checkpoints[destination] = RelayCheckpoint(
            destination, max(now.position, position), max(now.sequence, sequence)
        )

    async def park(self, messages: Sequence[ParkedMessage]) -> None:
        for message in messages:
            self._parked.setdefault((message.destination, message.position), message)

    async def parked(self, destination: str, stream_id: str | None = None) -> list[ParkedMessage]:
        return sorted(
            (
                m
                for (d, _), m in self._parked.items()
                if d == destination and (stream_id is None or m.stream_id == stream_id)
            ),
            key=lambda m: m.position,
        )

    async def release(
        self, destination: str, positions: Sequence[int], *, sequence: int | None = None
    ) -> None:
        for position in positions:
            self._parked.pop((destination, position), None)
        if sequence is not None:
            now = await self.checkpoint(destination)
            await self.advance(destination, position=now.position, sequence=sequence)

    async def close(self) -> None:
        pass
