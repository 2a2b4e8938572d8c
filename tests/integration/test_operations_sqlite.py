"""Operations from one App while another runs the projection, on SQLite files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.integration import operations_scenario as scenario
from twofold import App, Settings, bootstrap

Scenario = Callable[[App, App], Awaitable[None]]


@pytest.fixture
async def apps(tmp_path: Path) -> AsyncIterator[tuple[App, App]]:
    events, views = f"sqlite:///{tmp_path}/events.db", f"sqlite:///{tmp_path}/views.db"
    scenario.Notes.broken = set()
    server = await bootstrap(scenario.NOTES, Settings(event_store=events, read_store=views))
    await server.start()
    operator = await bootstrap(
        scenario.NOTES, Settings(event_store=events, read_store=views, projections="off")
    )
    try:
        await operator.start()
        assert server.runs_projections and not operator.runs_projections
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
