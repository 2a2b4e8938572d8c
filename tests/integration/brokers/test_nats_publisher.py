"""The NATS JetStream publisher passes the Publisher contract, against nats-server -js."""

from __future__ import annotations

import nats
import pytest

from tests.integration.brokers.servers import NatsServer
from twofold.adapters.nats import NatsPublisher, NatsSettings, open_nats_publisher
from twofold.adapters.nats.publisher import subject_token
from twofold.application.relay.message import BusMessage, decode_message
from twofold.application.relay.publisher import Publisher
from twofold.errors import ConfigurationError
from twofold.testing.publisher_contract import PublisherContract, bus_message


async def read_stream(url: str, stream: str = "TWOFOLD") -> list[tuple[str, BusMessage]]:
    """(subject, message) of everything the stream holds, in its order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        held = []
        for seq in range(state.first_seq, state.last_seq + 1):
            raw = await js.get_msg(stream, seq)
            assert raw.subject is not None
            held.append((raw.subject, decode_message(raw.headers or {}, raw.data or b"")))
        return held
    finally:
        await nc.close()


class TestNatsPublisher(PublisherContract):
    @pytest.fixture(autouse=True)
    def _broker(self, nats_server: NatsServer) -> None:
        self.server = nats_server

    async def make_publisher(self, *, max_message_bytes: int) -> Publisher:
        return NatsPublisher(
            NatsSettings(servers=self.server.url, max_msg_size=max_message_bytes, timeout=2.0)
        )

    async def read_back(self) -> list[BusMessage]:
        return [message for _, message in await read_stream(self.server.url)]

    def stop_broker(self) -> None:
        self.server.stop()

    def start_broker(self) -> None:
        self.server.start()


async def test_subjects_carry_the_event_type_and_the_stream_id(nats_server: NatsServer) -> None:
    publisher = open_nats_publisher(f"{nats_server.url}?prefix=shop")
    await publisher.open()
    try:
        await publisher.publish(bus_message("order.7 é", type="OrderPlaced"))
    finally:
        await publisher.close()
    nc = await nats.connect(nats_server.url)
    try:
        config = (await nc.jetstream().stream_info("TWOFOLD")).config
        assert config.subjects == ["shop.>"]
        assert config.duplicate_window == 120
    finally:
        await nc.close()
    [(subject, message)] = await read_stream(nats_server.url)
    assert subject == "shop.OrderPlaced.order%2E7%20%C3%A9"
    assert message.stream_id == "order.7 é"


def test_a_subject_token_never_holds_a_separator_or_a_wildcard() -> None:
    for text in ("a.b", "*", ">", "a b", "100%", "", "tab\there"):
        token = subject_token(text)
        assert token and not set(token) & set(".*> \t"), token


async def test_the_broker_drops_a_message_published_again_by_its_event_id(
    nats_server: NatsServer,
) -> None:
    publisher = open_nats_publisher(nats_server.url)
    await publisher.open()
    try:
        message = bus_message()
        await publisher.publish(message)
        await publisher.publish(message)
    finally:
        await publisher.close()
    assert [m for _, m in await read_stream(nats_server.url)] == [message]


async def test_the_destination_names_host_and_stream_without_secrets() -> None:
    publisher = open_nats_publisher("nats://ann:secret@broker.internal:4222?stream=ORDERS")
    assert publisher.destination == "nats://broker.internal:4222/ORDERS"


def test_an_unknown_or_invalid_url_option_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        open_nats_publisher("nats://127.0.0.1:4222?strem=X")
    with pytest.raises(ConfigurationError, match="timeout"):
        open_nats_publisher("nats://127.0.0.1:4222?timeout=-1")
