"""The errors of moving events between processes, under twofold's root error::

TwofoldError
└── RelayError
    ├── MalformedMessageError     a delivered message is not one of twofold's
    ├── PublishError
    │   ├── BrokerUnavailableError  the broker did not answer; twofold retries
    │   └── MessageRefusedError     the broker refused this message for good; it parks
    ├── MessageGapError           a bus-fed runner met a gap it cannot explain; it stops
    └── RelayNotActiveError       a relay operation asked of a process that does not run it
"""

from __future__ import annotations

from twofold.errors import TwofoldError

__all__ = [
    "BrokerUnavailableError",
    "MalformedMessageError",
    "MessageGapError",
    "MessageRefusedError",
    "PublishError",
    "RelayError",
    "RelayNotActiveError",
]


class RelayError(TwofoldError):
    """Moving events to or from a bus failed."""


class MalformedMessageError(RelayError):
    """A delivered message lacks a header twofold needs, or the header's value is wrong."""

    def __init__(self, header: str, problem: str) -> None:
        self.header = header
        self.problem = problem
        super().__init__(
            f"the message's header {header} {problem}; only messages published by a twofold "
            "relay (CloudEvents 1.0 binary mode, docs/relay.md) can be consumed here"
        )


class PublishError(RelayError):
    """A publisher could not hand a message to its broker."""


class BrokerUnavailableError(PublishError):
    """The broker did not answer (down, unreachable, timed out): a passing failure.

    Nothing is lost: the event stays in the log and the relay publishes it again; a runner
    fed by the bus receives it again.
    """

    def __init__(self, destination: str, reason: str) -> None:
        self.destination = destination
        self.reason = reason
        super().__init__(
            f"{destination} is unavailable ({reason}); twofold retries with backoff and goes "
            "on from where it stopped when the broker is back"
        )


class MessageRefusedError(PublishError):
    """The broker refused this one message for good (too large, say): retrying won't help."""

    def __init__(self, destination: str, event_id: str, reason: str) -> None:
        self.destination = destination
        self.event_id = event_id
        self.reason = reason
        super().__init__(
            f"{destination} refused event {event_id}: {reason}; it parks with the rest of "
            "its stream: fix the cause (a broker limit, say), then retry or skip it"
        )


class MessageGapError(RelayError):
    """A runner fed by a bus received a stream's event while an earlier one never came."""

    def __init__(self, consumer: str, stream_id: str, expected: int, received: int) -> None:
        self.consumer = consumer
        self.stream_id = stream_id
        self.expected = expected
        self.received = received
        super().__init__(
            f"{consumer} expected version {expected} of stream {stream_id!r} but received "
            f"version {received}: events {expected}..{received - 1} are missing from the bus; "
            "it stopped rather than skip them. Check the relay's parked messages (retry or "
            "skip them), or the broker's retention, then start it again"
        )


class RelayNotActiveError(RelayError):
    """Retrying or skipping parked messages was asked of a process whose relay to that
    destination is not active (another process holds its lease, or none runs it)."""

    def __init__(self, destination: str, active: list[str]) -> None:
        self.destination = destination
        self.active = active
        where = ", ".join(active) or "none"
        super().__init__(
            f"this process does not run the relay to {destination!r} (it runs: {where}); ask "
            "the process that holds its lease (twofold relay, or the twofold serve process "
            "with TWOFOLD_RELAY=run), so that two relays never publish one destination"
        )
