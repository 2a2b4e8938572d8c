"""Reading a relay's JetStream stream: a durable pull consumer per group.

The consumer (name: the group, default ``twofold``) is created when missing: deliver all,
explicit acks, ``ack_wait`` 30 s (option), filter ``{prefix}.>``. Members of one group pull
from the same consumer, so they share the messages; JetStream hands out messages in stream
order but does not keep one stream's messages on one member, so give each group one member
when the runner must see each stream in order (the bus runner stops on a gap rather than
apply out of order), or split the work by subject filter (option ``filter``, a subject
pattern such as ``twofold.OrderPlaced.>``) into groups of one member each.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from twofold.adapters._bus_url import BusUrl
from twofold.adapters.nats.publisher import NatsPublisher, NatsSettings, connection_error
from twofold.application.relay.errors import BrokerUnavailableError
from twofold.application.relay.message import decode_message
from twofold.application.relay.source import Delivery

__all__ = ["NatsSource", "open_nats_source"]

# How long the second fetch waits when nothing more is there (it returns at once otherwise).
_NO_WAIT = 0.005


@dataclasses.dataclass(frozen=True)
class NatsSourceSettings:
    nats: NatsSettings
    group: str = "twofold"
    ack_wait: float = 30.0
    filter: str | None = None


class NatsSource:
    def __init__(self, settings: NatsSourceSettings) -> None:
        self.settings = settings
        self._nc: Client | None = None
        self._sub: nats.js.JetStreamContext.PullSubscription | None = None
        self._destination = NatsPublisher(settings.nats).destination

    @property
    def destination(self) -> str:
        return self._destination

    async def open(self) -> None:
        nats_settings = self.settings.nats
        try:
            if self._nc is None:
                self._nc = await nats.connect(
                    nats_settings.servers,
                    connect_timeout=nats_settings.connect_timeout,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    error_cb=connection_error,
                )
            if self._sub is None:
                # The relay makes the stream; a worker that starts first makes it the same way.
                publisher = NatsPublisher(nats_settings)
                await publisher.open()
                await publisher.close()
                js = self._nc.jetstream(timeout=nats_settings.timeout)
                subject = self.settings.filter or f"{nats_settings.prefix}.>"
                self._sub = await js.pull_subscribe(
                    subject,
                    durable=self.settings.group,
                    stream=nats_settings.stream,
                    config=ConsumerConfig(
                        deliver_policy=DeliverPolicy.ALL,
                        ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=self.settings.ack_wait,
                        max_ack_pending=-1,
                    ),
                )
        except (OSError, nats.errors.Error) as exc:
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc

    async def receive(self, *, max_messages: int, timeout: float) -> list[Delivery]:
        if self._sub is None:
            await self.open()
        assert self._sub is not None
        try:
            # A fetch of many waits until it has them all or the time is up; a fetch of one
            # returns with the first. So: wait for one, then take what is there already.
            msgs = await self._sub.fetch(1, timeout=timeout)
            if max_messages > 1:
                with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                    msgs += await self._sub.fetch(max_messages - 1, timeout=_NO_WAIT)
        except (nats.errors.TimeoutError, TimeoutError):
            return []  # nothing came within the timeout
        except (OSError, nats.errors.Error) as exc:
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc
        return [Delivery(decode_message(m.headers or {}, m.data), m) for m in msgs]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        try:
            for delivery in deliveries:
                msg: Msg = delivery.handle
                await msg.ack()
        except (OSError, nats.errors.Error) as exc:
            # Not acknowledged: delivered again later, and dropped then as a duplicate.
            raise BrokerUnavailableError(self.destination, f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None and not nc.is_closed:
            await nc.close()


def open_nats_source(url: str) -> NatsSource:
    """A source for ``nats://`` URLs: the publisher's options plus ``group``, ``ack_wait``,
    ``filter``."""
    bus = BusUrl(
        url,
        schemes=("nats", "tls"),
        options={
            "stream": "JetStream stream name, default TWOFOLD",
            "prefix": "subject prefix, default twofold",
            "timeout": "seconds, default 5",
            "group": "the durable consumer's name, default twofold",
            "ack_wait": "seconds before an unacknowledged message is delivered again",
            "filter": "a subject pattern, default {prefix}.>",
        },
    )
    publisher_options = {k: v for k, v in bus.query.items() if k in ("stream", "prefix", "timeout")}
    base = bus.parts._replace(query="&".join(f"{k}={v}" for k, v in publisher_options.items()))
    return NatsSource(
        NatsSourceSettings(
            nats=NatsSettings.from_url(base.geturl()),
            group=bus.option("group", str, "twofold"),
            ack_wait=bus.positive("ack_wait", float, 30.0),
            filter=bus.option("filter", str, None),
        )
    )
