"""End-to-end fixtures: the real ASGI app under uvicorn on a free loopback port, over HTTP.

No mocks: each test gets a server of its own, with its SQLite files in ``tmp_path``, and
talks to it with httpx like any client would.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.e2e.cli_helpers import Stores, postgres_stores
from twofold import Settings
from twofold.examples.shop.http import api as shop_api
from twofold.http.protocol import ProblemHttpToolsProtocol


@contextmanager
def running(asgi_app: Any) -> Iterator[str]:
    """Serve ``asgi_app`` in a thread until the block ends; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        asgi_app,
        lifespan="on",
        loop="asyncio",
        http=ProblemHttpToolsProtocol,
        ws="none",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server failed to start; see the log above")
            thread.join(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def shop_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        event_store=f"sqlite:///{tmp_path}/events.db",
        read_store=f"sqlite:///{tmp_path}/views.db",
        **overrides,
    )


@pytest.fixture
def shop_url(tmp_path: Path) -> Iterator[str]:
    with running(shop_api.asgi(shop_settings(tmp_path))) as url:
        yield url


@pytest.fixture
def client(shop_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop_url, timeout=30) as http:
        yield http


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """A real SQLite folder, or a real PostgreSQL schema of this test's own (dropped after)."""
    if request.param == "sqlite":
        yield Stores(
            kind="sqlite",
            events=f"sqlite:///{tmp_path}/events.db",
            views=f"sqlite:///{tmp_path}/views.db",
            folder=tmp_path,
        )
        return
    with postgres_stores(tmp_path) as stores:
        yield stores
