"""The BusSource port: what a runner in another service reads a relay's destination through.

- ``receive`` returns the next messages in the broker's order (up to ``max_messages``),
  or an empty list when none came within ``timeout`` seconds; it raises
  BrokerUnavailableError while the broker cannot be reached.
- A message stays the consumer's until ``ack``; one not acknowledged is delivered again
  (after a restart, or the broker's redelivery delay): delivery is at least once.
- Sources of one ``group`` share the destination's messages; each stream's messages go to
  one member at a time and in order where the broker can promise it (Kafka: the stream id
  is the key, so a stream stays in one partition). See docs/relay.md for each broker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from twofold.application.relay.message import BusMessage

__all__ = ["BusSource", "Delivery"]


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """A received message, with the handle its source acknowledges it by."""

    message: BusMessage
    handle: Any = dataclasses.field(default=None, compare=False)


class BusSource(Protocol):
    @property
    def destination(self) -> str: ...

    async def open(self) -> None: ...

    async def receive(self, *, max_messages: int, timeout: float) -> list[Delivery]: ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None: ...

    async def close(self) -> None: ...
