"""Fixtures: a broker process of the test's own, on a free port, stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.brokers.servers import (
    NatsServer,
    RedisServer,
    TansuServer,
    nats_binary,
    redis_binary,
    running,
    tansu_binary,
)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with running(NatsServer(tmp_path, nats_binary())) as server:
        yield server


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running(RedisServer(tmp_path, redis_binary())) as server:
        yield server


@pytest.fixture
def tansu_server(tmp_path: Path) -> Iterator[TansuServer]:
    with running(TansuServer(tmp_path, tansu_binary())) as server:
        yield server
