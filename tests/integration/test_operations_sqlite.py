"""Operations from one App while another runs the projection, on SQLite files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration import operations_scenario as scenario
from twofold import App


@pytest.fixture
async def apps(tmp_path: Path) -> AsyncIterator[tuple[App, App]]:
    events, views = f"sqlite:///{tmp_path}/events.db", f"sqlite:///{tmp_path}/views.db"
    async with scenario.server_and_operator(events, views) as pair:
        yield pair


@pytest.mark.parametrize("run", scenario.SCENARIOS, ids=lambda run: run.__name__)
async def test_operation_from_another_app_is_honoured(
    apps: tuple[App, App], run: scenario.Scenario
) -> None:
    await run(*apps)
