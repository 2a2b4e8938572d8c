"""Publishing to NATS JetStream.

Subjects: ``{prefix}.{type}.{stream_id}`` (default prefix ``twofold``), so a consumer can
filter by event type (``twofold.OrderShipped.>``) or by stream (``twofold.*.order-1``).
A character that a subject token cannot hold (``.``, ``*``, ``>``, ``%``, white space,
anything outside printable ASCII) is percent-encoded: ``order.1`` becomes ``order%2E1``.

``Nats-Msg-Id`` is the event id, so JetStream drops a message published again within the
stream's ``duplicate_window``. The stream is created when missing, with these settings:
name ``TWOFOLD`` (option ``stream``), subjects ``{prefix}.>``, file storage, limits
retention with no limit on count, bytes or age (the log stays the source of truth: set
limits on the broker to trim), ``duplicate_window`` 120 s, ``max_msg_size`` the server's
(option ``max_msg_size``), one replica (option ``replicas``). An existing stream is used as
it is.

URL: ``nats://[user:password@]host:4222?stream=TWOFOLD&prefix=twofold&timeout=5``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from urllib.parse import quote

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from twofold.adapters._bus_url import BusUrl
from twofold.application.relay.errors import (
    BrokerUnavailableError,
    MessageRefusedError,
    PublishError,
)
from twofold.application.relay.message import BusMessage

__all__ = [
    "NatsPublisher",
    "NatsSettings",
    "connection_error",
    "open_nats_publisher",
    "subject_token",
]

# JetStream error codes that refuse a message for good, not for now.
_REFUSED = {10054: "the message is larger than the stream's max_msg_size"}

_TOKEN_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ".*>%")


def subject_token(text: str) -> str:
    """``text`` as one subject token: percent-encoded where NATS would split or match it."""
    # quote() never encodes ".", which splits subjects: encode it after.
    return quote(text, safe=_TOKEN_SAFE).replace(".", "%2E") if text else "%00"


@dataclasses.dataclass(frozen=True)
class NatsSettings:
    servers: str = "nats://127.0.0.1:4222"
    stream: str = "TWOFOLD"
    prefix: str = "twofold"
    timeout: float = 5.0
    """Seconds to wait for a PubAck before the broker counts as unavailable."""
    max_msg_size: int = -1
    """Bytes; -1 is the server's max_payload. Applied when the stream is created."""
    duplicate_window: float = 120.0
    replicas: int = 1
    connect_timeout: float = 2.0

    @classmethod
    def from_url(cls, url: str) -> NatsSettings:
        bus = BusUrl(
            url,
            schemes=("nats", "tls"),
            options={
                "stream": "JetStream stream name, default TWOFOLD",
                "prefix": "subject prefix, default twofold",
                "timeout": "seconds to wait for an acknowledgement, default 5",
                "max_msg_size": "bytes, default the server's",
                "duplicate_window": "seconds, default 120",
                "replicas": "default 1",
            },
        )
        servers = bus.parts._replace(query="").geturl()
        return cls(
            servers=servers,
            stream=bus.option("stream", str, cls.stream),
            prefix=bus.option("prefix", str, cls.prefix),
            timeout=bus.positive("timeout", float, cls.timeout),
            max_msg_size=bus.option("max_msg_size", int, cls.max_msg_size),
            duplicate_window=bus.positive("duplicate_window", float, cls.duplicate_window),
            replicas=bus.positive("replicas", int, cls.replicas),
        )

    def subject(self, message: BusMessage) -> str:
        record = message.record
        return f"{self.prefix}.{subject_token(record.type)}.{subject_token(record.stream_id)}"


class NatsPublisher:
    """A Publisher to one JetStream stream (see the module for subjects and settings)."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        host = settings.servers.split("@")[-1].split(",")[0].rstrip("/")
        self._destination = f"nats://{host.removeprefix('nats://')}/{settings.stream}"

    @property
    def destination(self) -> str:
        return self._destination

    async def open(self) -> None:
        if self._nc is None:
            try:
                self._nc = await nats.connect(
                    self.settings.servers,
                    connect_timeout=self.settings.connect_timeout,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    error_cb=connection_error,
                    allow_reconnect=True,
                )
            except (OSError, nats.errors.Error) as exc:
                raise BrokerUnavailableError(self.destination, _reason(exc)) from exc
            self._js = self._nc.jetstream(timeout=self.settings.timeout)
        await self._ensure_stream()

    async def _ensure_stream(self) -> None:
        js = self._jetstream()
        try:
            try:
                await js.stream_info(self.settings.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(
                    StreamConfig(
                        name=self.settings.stream,
                        subjects=[f"{self.settings.prefix}.>"],
                        storage=StorageType.FILE,
                        max_msg_size=self.settings.max_msg_size,
                        duplicate_window=self.settings.duplicate_window,
                        num_replicas=self.settings.replicas,
                    )
                )
        except (OSError, nats.errors.Error) as exc:
            raise BrokerUnavailableError(self.destination, _reason(exc)) from exc
        self._stream_ready = True

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise BrokerUnavailableError(self.destination, "not open; call open() first")
        return self._js

    async def publish(self, message: BusMessage) -> None:
        if not self._stream_ready:
            await self.open()
        headers = message.headers()
        headers["Nats-Msg-Id"] = message.event_id
        try:
            await self._jetstream().publish(
                self.settings.subject(message),
                message.body,
                timeout=self.settings.timeout,
                stream=self.settings.stream,
                headers=headers,
            )
        except nats.js.errors.APIError as exc:
            refused = _REFUSED.get(exc.err_code or 0)
            if refused is not None:
                raise MessageRefusedError(self.destination, message.event_id, refused) from exc
            if isinstance(exc, nats.js.errors.NoStreamResponseError):
                self._stream_ready = False  # the stream may be gone: make it again
            raise BrokerUnavailableError(self.destination, _reason(exc)) from exc
        except nats.errors.MaxPayloadError as exc:
            raise MessageRefusedError(
                self.destination, message.event_id, "larger than the server's max_payload"
            ) from exc
        except (OSError, nats.errors.Error) as exc:
            raise BrokerUnavailableError(self.destination, _reason(exc)) from exc

    async def publish_many(self, messages: Sequence[BusMessage]) -> list[PublishError | None]:
        """Each message is a JetStream request of its own, all of them under way at once.

        Not ``publish_async``: nats-py 2.16 never answers its future when JetStream replies
        with an error (the error is raised inside its reply callback), so a refused message
        would look like a timeout, and retried for ever instead of parked.
        """
        results = await asyncio.gather(
            *(self.publish(message) for message in messages), return_exceptions=True
        )
        outcomes: list[PublishError | None] = []
        for result in results:
            if isinstance(result, PublishError):
                outcomes.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                outcomes.append(None)
        return outcomes

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        self._stream_ready = False
        if nc is not None and not nc.is_closed:
            await nc.close()


_log = logging.getLogger("twofold.relay")


async def connection_error(exc: Exception) -> None:
    """nats-py reports each failed reconnection here; one line, not a traceback each time."""
    _log.info("nats: %s: %s", type(exc).__name__, exc)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def open_nats_publisher(url: str) -> NatsPublisher:
    """A publisher for ``nats://`` URLs (not connected yet: the relay calls ``open``)."""
    return NatsPublisher(NatsSettings.from_url(url))
