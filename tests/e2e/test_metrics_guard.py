"""Who may read `GET /metrics`: a key of the `metrics` or `admin` scope when keys are set;
without keys, clients on the loopback address only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from tests.e2e.conftest import shop_settings
from twofold import Settings
from twofold.examples.shop.http import api as shop_api
from twofold.settings import parse_api_keys

METRICS_KEY = "m" * 20
ADMIN_KEY = "a" * 20
WRITE_KEY = "w" * 20


@asynccontextmanager
async def served(settings: Settings, client_host: str) -> AsyncIterator[httpx.AsyncClient]:
    """The shop's ASGI app, started, answering requests from ``client_host``."""
    app = shop_api.asgi(settings)
    assert isinstance(app, Starlette)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            yield client


def keyed(tmp_path: Path) -> Settings:
    keys = parse_api_keys(
        f"prometheus:{METRICS_KEY}=metrics,ops:{ADMIN_KEY}=admin,app:{WRITE_KEY}=commands+queries"
    )
    return shop_settings(tmp_path, api_keys=keys)


async def test_a_metrics_key_reads_metrics_and_nothing_else(tmp_path: Path) -> None:
    async with served(keyed(tmp_path), "10.1.2.3") as client:
        bearer = {"Authorization": f"Bearer {METRICS_KEY}"}
        response = await client.get("/metrics", headers=bearer)
        assert response.status_code == 200
        assert "twofold_projection_position" in response.text
        # The metrics scope opens no other door.
        refused = await client.get("/api/users/u1", headers=bearer)
        assert refused.status_code == 403
        assert "lacks the 'queries' scope" in refused.json()["detail"]


async def test_an_admin_key_reads_metrics_too(tmp_path: Path) -> None:
    async with served(keyed(tmp_path), "10.1.2.3") as client:
        response = await client.get("/metrics", headers={"X-API-Key": ADMIN_KEY})
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ({}, 401, "needs a key"),
        ({"Authorization": "Bearer not-a-key-of-this-service"}, 401, "not valid"),
        ({"Authorization": f"Bearer {WRITE_KEY}"}, 403, "lacks the 'metrics' scope"),
    ],
)
async def test_metrics_refuse_callers_without_the_scope(
    tmp_path: Path, headers: dict[str, str], status: int, says: str
) -> None:
    # From the loopback address too: with keys set, the key decides.
    async with served(keyed(tmp_path), "127.0.0.1") as client:
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == status
        assert says in response.json()["detail"]


async def test_without_keys_metrics_answer_loopback_clients_only(tmp_path: Path) -> None:
    async with served(shop_settings(tmp_path), "127.0.0.1") as client:
        assert (await client.get("/metrics")).status_code == 200
    async with served(shop_settings(tmp_path), "::1") as client:
        assert (await client.get("/metrics")).status_code == 200
    async with served(shop_settings(tmp_path), "192.168.1.20") as client:
        response = await client.get("/metrics")
        assert response.status_code == 403
        assert "TWOFOLD_API_KEYS" in response.json()["detail"]
