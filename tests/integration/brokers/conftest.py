"""Fixtures: a broker process of the test's own, on a free port, stopped after the test;
and ``figures``, lines a test reports (the fault test's counts), printed in pytest's summary
so that a normal run (no ``-s``) shows them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter

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


FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> list[str]:
    """Append lines here; they are printed at the end of the run, passed or failed."""
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("broker figures")
        for line in lines:
            terminalreporter.write_line(line)
