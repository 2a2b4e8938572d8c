"""Idempotency-Key and If-Match over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import running, shop_settings
from tests.e2e.shop_client import created, fields, head, ok, problem, shop, user
from twofold.examples.shop.http import api
from twofold.settings import parse_api_keys

NEW_USER = {"email": "ann@example.com", "name": "Ann"}


def test_a_repeated_key_returns_the_first_answer_and_records_nothing(
    client: httpx.Client,
) -> None:
    key = {"Idempotency-Key": "create-ann-1"}
    first = client.post("/api/users", json=NEW_USER, headers=key)
    again = client.post("/api/users", json=NEW_USER, headers=key)
    assert created(again) == created(first)
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert head(client) == 1


def test_a_repeated_key_on_a_change_records_nothing(client: httpx.Client) -> None:
    user(client)
    key = {"Idempotency-Key": "login-7"}
    first = ok(client.post("/api/users/u1/logins", headers=key))
    assert ok(client.post("/api/users/u1/logins", headers=key)) == first
    assert head(client) == 2


def test_the_same_key_with_another_body_is_422(client: httpx.Client) -> None:
    key = {"Idempotency-Key": "k"}
    created(client.post("/api/users", json=NEW_USER, headers=key))
    other = {"email": "bob@example.com", "name": "Bob"}
    body = problem(client.post("/api/users", json=other, headers=key), 422)
    assert fields(body) == {"Idempotency-Key"}
    assert head(client) == 1


def test_a_refused_command_leaves_its_key_free(client: httpx.Client) -> None:
    key = {"Idempotency-Key": "retry-me"}
    problem(client.post("/api/users", json={"email": "bad", "name": "Ann"}, headers=key), 422)
    created(client.post("/api/users", json=NEW_USER, headers=key))


def test_the_same_key_on_another_route_runs_that_routes_command(client: httpx.Client) -> None:
    key = {"Idempotency-Key": "k"}
    created(client.post("/api/users", json=NEW_USER, headers=key))
    added = client.post("/api/products", json={"name": "Pen", "price": "1.50"}, headers=key)
    created(added)
    assert "idempotent-replayed" not in added.headers
    assert head(client) == 2


ANN_KEY = "ann-secret-0123456789abcdef"
BOB_KEY = "bob-secret-0123456789abcdef"


@pytest.fixture
def two_callers(tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    keys = parse_api_keys(f"{ANN_KEY}=commands+queries,{BOB_KEY}=commands+queries")
    with (
        running(api.asgi(shop_settings(tmp_path, api_keys=keys))) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ANN_KEY}"}) as ann,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {BOB_KEY}"}) as bob,
    ):
        yield ann, bob


def test_another_caller_sending_the_same_key_and_body_runs_their_own_command(
    two_callers: tuple[httpx.Client, httpx.Client],
) -> None:
    ann, bob = two_callers
    key = {"Idempotency-Key": "create-1"}
    first = ann.post("/api/users", json=NEW_USER, headers=key)
    theirs = bob.post("/api/users", json=NEW_USER, headers=key)
    assert "idempotent-replayed" not in theirs.headers
    assert created(theirs)["id"] != created(first)["id"]
    assert theirs.headers["location"] != first.headers["location"]
    # Each caller's repeat gets their own first answer back.
    again = bob.post("/api/users", json=NEW_USER, headers=key)
    assert again.headers["idempotent-replayed"] == "true"
    assert created(again) == created(theirs)
    assert created(ann.post("/api/users", json=NEW_USER, headers=key)) == created(first)
    for answer in (first, theirs):
        user_id = created(answer)["id"]
        position = created(answer)["position"]
        view = ok(ann.get(f"/api/users/{user_id}", params={"min_position": position}))
        assert view["name"] == NEW_USER["name"]


def test_if_match_with_the_current_version_succeeds(client: httpx.Client) -> None:
    user(client)
    answer = ok(client.post("/api/users/u1/name", json={"name": "B"}, headers={"If-Match": '"1"'}))
    assert answer["version"] == 2


def test_if_match_takes_the_etag_of_a_read(client: httpx.Client) -> None:
    position = user(client)["position"]
    etag = client.get("/api/users/u1", params={"min_position": position}).headers["etag"]
    answer = ok(client.post("/api/users/u1/name", json={"name": "B"}, headers={"If-Match": etag}))
    assert answer["version"] == 2
    # The same ETag is stale now: its version is 1.
    stale = client.post("/api/users/u1/name", json={"name": "C"}, headers={"If-Match": etag})
    assert problem(stale, 412)["current_version"] == 2


def test_if_match_with_an_old_version_is_412_and_records_nothing(client: httpx.Client) -> None:
    shop(client)
    ok(client.post("/api/orders/o1/ship", json={"shipping_address": "a", "tracking_number": "t"}))
    before = head(client)
    body = problem(
        client.post("/api/orders/o1/cancel", json={"reason": "r"}, headers={"If-Match": '"1"'}),
        412,
    )
    assert body["current_version"] == 2
    assert head(client) == before


def test_a_malformed_if_match_is_422(client: httpx.Client) -> None:
    user(client)
    body = problem(
        client.post("/api/users/u1/name", json={"name": "B"}, headers={"If-Match": "one"}), 422
    )
    assert fields(body) == {"If-Match"}
