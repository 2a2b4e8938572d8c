"""API keys: commands need the `commands` scope, queries `queries` (seed 004)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import running, shop_settings
from tests.e2e.shop_client import created, ok, problem
from twofold.examples.shop.http import api
from twofold.settings import parse_api_keys

KEYS = "writer=commands,reader=queries,both=commands+queries,ops=admin"
NEW_USER = {"user_id": "u1", "email": "ann@example.com", "name": "Ann"}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = shop_settings(tmp_path, api_keys=parse_api_keys(KEYS))
    with running(api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_without_a_key_commands_and_queries_are_401(secured: httpx.Client) -> None:
    response = secured.post("/api/users", json=NEW_USER)
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem(secured.get("/api/users/u1"), 401)


def test_an_unknown_key_is_401(secured: httpx.Client) -> None:
    problem(secured.post("/api/users", json=NEW_USER, headers=bearer("guess")), 401)


def test_a_key_without_the_scope_is_403(secured: httpx.Client) -> None:
    problem(secured.post("/api/users", json=NEW_USER, headers=bearer("reader")), 403)
    problem(secured.get("/api/users/u1", headers=bearer("writer")), 403)
    problem(secured.get("/api/users/u1", headers=bearer("ops")), 403)


def test_keys_with_the_scope_pass(secured: httpx.Client) -> None:
    position = created(secured.post("/api/users", json=NEW_USER, headers=bearer("writer")))[
        "position"
    ]
    answer = secured.get(
        "/api/users/u1", params={"min_position": position}, headers={"X-API-Key": "reader"}
    )
    assert ok(answer)["name"] == "Ann"
    ok(secured.post("/api/users/u1/logins", headers=bearer("both")))


def test_health_and_the_schema_stay_open(secured: httpx.Client) -> None:
    ok(secured.get("/health"))
    schema = ok(secured.get("/openapi.json"))
    assert "bearer" in schema["components"]["securitySchemes"]
