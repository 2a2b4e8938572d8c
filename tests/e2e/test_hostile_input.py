"""Hostile input against every route of the shop on SQLite (tests/e2e/hostile.py has the
cases; tests/integration/postgres runs the same on PostgreSQL): never a 5xx, always problem
details naming the field, and nothing stored after a refusal."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import running, shop_settings
from tests.e2e.hostile import CASES, Hostile, check, check_generated, prepare
from twofold.examples.shop.http import api


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    settings = shop_settings(tmp_path_factory.mktemp("hostile"))
    with running(api.asgi(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        prepare(client)
        yield client


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input_is_refused_naming_the_field_and_stores_nothing(
    hostile_client: httpx.Client, case: Hostile
) -> None:
    check(hostile_client, case)


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error_and_refusals_store_nothing(
    hostile_client: httpx.Client,
) -> None:
    check_generated(hostile_client, examples=400)
