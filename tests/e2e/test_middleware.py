"""Users' Starlette middleware applies to every route, the API's fast routes included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from tests.e2e.conftest import running, shop_settings
from tests.e2e.shop_client import created, ok
from twofold.examples.bank.http import api as bank_api
from twofold.examples.shop.http import api as shop_api

ORIGIN = "https://shop.example"


def with_middleware(app: Any, seen: list[Any]) -> Any:
    app.add_middleware(GZipMiddleware, minimum_size=10)
    app.add_middleware(
        CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["*"], allow_headers=["*"]
    )

    class Recorder:  # a plain ASGI middleware that notes the app Starlette put in the scope
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(scope.get("app"))
            await self.inner(scope, receive, send)

    app.add_middleware(Recorder)
    return app


def preflight(client: httpx.Client, path: str) -> None:
    answer = client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,idempotency-key",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in answer.headers["access-control-allow-methods"]


def gzipped(client: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    answer = client.get(path, params=params, headers={"Accept-Encoding": "gzip", "Origin": ORIGIN})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    body: dict[str, Any] = answer.json()  # httpx has decompressed it
    return body


def test_cors_and_gzip_apply_to_the_shops_api_routes(tmp_path: Path) -> None:
    seen: list[Any] = []
    app = with_middleware(shop_api.asgi(shop_settings(tmp_path)), seen)
    with running(app) as url, httpx.Client(base_url=url) as client:
        preflight(client, "/api/users")
        user = created(
            client.post(
                "/api/users",
                json={"user_id": "ann", "email": "ann@x.example", "name": "Ann " * 20},
                headers={"Origin": ORIGIN},
            )
        )
        view = gzipped(client, "/api/users/ann", {"min_position": user["position"]})
        assert view["name"] == "Ann " * 20
    assert seen and all(s is app for s in seen), "scope['app'] is the app on every request"


def test_cors_and_gzip_apply_to_a_users_own_api_routes(tmp_path: Path) -> None:
    seen: list[Any] = []
    app = with_middleware(bank_api.asgi(shop_settings(tmp_path)), seen)
    with running(app) as url, httpx.Client(base_url=url) as client:
        preflight(client, "/accounts")
        opened = created(client.post("/accounts", json={"owner": "Ann", "account_id": "a1"}))
        view = gzipped(client, "/accounts/a1", {"min_position": opened["position"]})
        assert view["owner"] == "Ann"
        assert ok(client.get("/health"))["status"] == "UP"
    assert seen and all(s is app for s in seen)
