"""API keys: commands need the `commands` scope, queries `queries` (seed 004)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import running, shop_settings
from tests.e2e.shop_client import created, ok, problem
from twofold.examples.shop.http import api
from twofold.settings import parse_api_keys

SECRETS = {
    "writer": "writer-secret-0123456789",
    "reader": "reader-secret-0123456789",
    "both": "both-secret-0123456789",
    "ops": "ops-secret-0123456789",
}
KEYS = (
    f"writer:{SECRETS['writer']}=commands,reader:{SECRETS['reader']}=queries,"
    f"both:{SECRETS['both']}=commands+queries,ops:{SECRETS['ops']}=admin"
)
NEW_USER = {"user_id": "u1", "email": "ann@example.com", "name": "Ann"}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = shop_settings(tmp_path, api_keys=parse_api_keys(KEYS))
    with running(api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        yield client


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


def test_without_a_key_commands_and_queries_are_401(secured: httpx.Client) -> None:
    response = secured.post("/api/users", json=NEW_USER)
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem(secured.get("/api/users/u1"), 401)


def test_an_unknown_key_is_401(secured: httpx.Client) -> None:
    guess = {"Authorization": "Bearer guess-guess-guess-guess"}
    problem(secured.post("/api/users", json=NEW_USER, headers=guess), 401)


def test_a_key_without_the_scope_is_403(secured: httpx.Client) -> None:
    problem(secured.post("/api/users", json=NEW_USER, headers=bearer("reader")), 403)
    problem(secured.get("/api/users/u1", headers=bearer("writer")), 403)
    problem(secured.get("/api/users/u1", headers=bearer("ops")), 403)


def test_keys_with_the_scope_pass(secured: httpx.Client) -> None:
    position = created(secured.post("/api/users", json=NEW_USER, headers=bearer("writer")))[
        "position"
    ]
    answer = secured.get(
        "/api/users/u1",
        params={"min_position": position},
        headers={"X-API-Key": SECRETS["reader"]},
    )
    assert ok(answer)["name"] == "Ann"
    ok(secured.post("/api/users/u1/logins", headers=bearer("both")))


def test_health_and_the_schema_stay_open(secured: httpx.Client) -> None:
    ok(secured.get("/health"))
    schema = ok(secured.get("/openapi.json"))
    assert "bearer" in schema["components"]["securitySchemes"]


def test_a_wrong_x_api_key_beside_a_valid_bearer_token_is_400(secured: httpx.Client) -> None:
    headers = {**bearer("writer"), "X-API-Key": "wrong-wrong-wrong-wrong"}
    body = problem(secured.post("/api/users", json=NEW_USER, headers=headers), 400)
    assert "X-API-Key" in body["detail"] and "Bearer" in body["detail"]
    assert problem(secured.get("/api/users/u1", headers=bearer("reader")), 404)
    # The same key in both headers names one key: accepted.
    same = {**bearer("writer"), "X-API-Key": SECRETS["writer"]}
    created(secured.post("/api/users", json=NEW_USER, headers=same))


def test_events_record_the_key_by_its_name_never_by_its_secret(tmp_path: Path) -> None:
    keys = f"{SECRETS['writer']}=commands,writer:{SECRETS['both']}=commands+queries"
    settings = shop_settings(tmp_path, api_keys=parse_api_keys(keys))
    with running(api.asgi(settings)) as url, httpx.Client(base_url=url) as client:
        unnamed = {"Authorization": f"Bearer {SECRETS['writer']}"}
        created(client.post("/api/users", json=NEW_USER, headers=unnamed))
        ok(client.post("/api/users/u1/logins", headers=bearer("both")))
    with sqlite3.connect(tmp_path / "events.db") as conn:
        rows = conn.execute("SELECT metadata FROM events ORDER BY position").fetchall()
    actors = [json.loads(metadata)["actor"] for (metadata,) in rows]
    assert actors == ["key-1", "writer"]
    stored = b"".join(metadata for (metadata,) in rows).decode()
    for secret in (SECRETS["writer"], SECRETS["both"]):
        assert secret not in stored
        assert hashlib.sha256(secret.encode()).hexdigest()[:8] not in stored
