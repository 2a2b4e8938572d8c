"""Hostile input against every route of the shop on PostgreSQL, the cases of
tests/e2e/hostile.py: never a 5xx (PostgreSQL refuses NUL in text, so a NUL that got
through would be a DataError), always problem details naming the field, nothing stored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import running
from tests.e2e.hostile import CASES, Hostile, check, check_generated, prepare
from tests.integration.postgres.conftest import drop_schema
from twofold import Settings
from twofold.examples.shop.http import api

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def hostile_client(postgres_url: str) -> Iterator[httpx.Client]:
    schema = f"twofold_test_{uuid.uuid4().hex[:12]}"
    target = f"{postgres_url}?schema={schema}"
    try:
        settings = Settings(event_store=target, read_store=target)
        with running(api.asgi(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
            prepare(client)
            yield client
    finally:
        drop_schema(postgres_url, schema)


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
