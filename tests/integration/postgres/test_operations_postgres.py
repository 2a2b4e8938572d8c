"""Operations from one App while another runs the projection, on one PostgreSQL schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration import operations_scenario as scenario
from twofold import App


@pytest.fixture
async def apps(postgres_url: str, pg_schema: str) -> AsyncIterator[tuple[App, App]]:
    url = f"{postgres_url}?schema={pg_schema}"
    async with scenario.server_and_operator(url, url) as pair:
        yield pair


@pytest.mark.parametrize("run", scenario.SCENARIOS, ids=lambda run: run.__name__)
async def test_operation_from_another_app_is_honoured(
    apps: tuple[App, App], run: scenario.Scenario
) -> None:
    await run(*apps)
