"""The Publisher port: hands bus messages to one broker destination, one at a time.

Contract (``twofold.testing.PublisherContract`` checks it on every adapter):

- ``open()`` connects and creates what the destination needs when it is missing (a stream,
  a topic); it raises BrokerUnavailableError while the broker cannot be reached.
- ``publish(message)`` returns once the broker has acknowledged the message durably (NATS
  JetStream's PubAck, Kafka's acks=all, Redis' XADD reply); it raises BrokerUnavailableError
  when it cannot tell (down, timeout: publish again later, nothing is lost), and
  MessageRefusedError when the broker refuses this message for good (too large).
- ``publish_many(messages)`` publishes several messages, of different streams, at once (one
  round trip where the broker allows it) and returns one outcome per message, in order:
  None when acknowledged, else the BrokerUnavailableError or MessageRefusedError of that
  message; it raises nothing for a message's failure.
- Both may be called concurrently; the relay never has two messages of one stream in flight,
  so a stream's order on the broker is the order of the acknowledgements.
- Publishing a message again (same ``event_id``) is safe: the broker drops it where it
  de-duplicates (JetStream), otherwise consumers drop it by ``event_id``.
- After the broker comes back, ``publish`` works again without a new ``open``.
- ``close()`` may be called twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twofold.application.relay.errors import PublishError
from twofold.application.relay.message import BusMessage

__all__ = ["Publisher"]


class Publisher(Protocol):
    @property
    def destination(self) -> str:
        """A stable name of the destination, without secrets; the relay keeps its checkpoint
        under it (``nats://host:4222/TWOFOLD``, say)."""
        ...

    async def open(self) -> None: ...

    async def publish(self, message: BusMessage) -> None: ...

    async def publish_many(self, messages: Sequence[BusMessage]) -> list[PublishError | None]: ...

    async def close(self) -> None: ...
