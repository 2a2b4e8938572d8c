"""Operations from one App while another runs the projection, on one PostgreSQL schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.integration import operations_scenario as scenario
from twofold import App, Settings, bootstrap

Scenario = Callable[[App, App], Awaitable[None]]


@pytest.fixture
async def apps(postgres_url: str, pg_schema: str) -> AsyncIterator[tuple[App, App]]:
    url = f"{postgres_url}?schema={pg_schema}"
    scenario.Notes.broken = set()
    server = await bootstrap(
        scenario.NOTES, Settings(event_store=url, read_store=url), retry_interval=0.05
    )
    await server.start()
    operator = await bootstrap(
        scenario.NOTES, Settings(event_store=url, read_store=url, projections="off")
    )
    try:
        await operator.start()

        async def leased() -> bool:
            return server.runs_projections

        await scenario.until(leased, "the server takes the projection's lease")
        yield server, operator
    finally:
        await operator.close()
        await server.close()
        scenario.Notes.broken = set()


@pytest.mark.parametrize(
    "run",
    [
        scenario.pause_and_resume,
        scenario.retry_and_skip,
        scenario.rebuild_while_serving,
        scenario.reset_while_serving,
        scenario.verify_finds_divergence,
        scenario.release_after_a_switch_elsewhere,
    ],
    ids=lambda run: run.__name__,
)
async def test_operation_from_another_app_is_honoured(apps: tuple[App, App], run: Scenario) -> None:
    await run(*apps)
