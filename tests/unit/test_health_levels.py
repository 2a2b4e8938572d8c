"""The levels of /health: lag over the threshold is DOWN; paused is DEGRADED."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.bank import BANK, Deposit, OpenAccount
from twofold import App, Settings, bootstrap
from twofold.http.health import check_health, check_ready


@pytest.fixture
async def unattended(tmp_path: Path) -> AsyncIterator[App]:
    """The bank on SQLite files, with nobody running its projection."""
    settings = Settings(
        event_store=f"sqlite:///{tmp_path}/events.db",
        read_store=f"sqlite:///{tmp_path}/views.db",
        projections="off",
    )
    async with await bootstrap(BANK, settings) as app:
        yield app


async def test_lag_over_the_threshold_is_down(unattended: App, tmp_path: Path) -> None:
    await unattended.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await unattended.dispatch(Deposit(account_id="a1", amount=Decimal(1)))
    with sqlite3.connect(tmp_path / "events.db") as events:  # recorded two minutes ago
        events.execute("UPDATE events SET recorded_at = recorded_at - 120000000")
    down = await check_health(unattended, threshold=60, runs_projections=False)
    [balances] = down.projections
    assert (down.status, balances.level, balances.lag_events) == ("DOWN", "DOWN", 2)
    assert balances.lag_seconds >= 120
    within = await check_health(
        unattended, threshold=3600, runs_projections=False, attended=unattended.attended
    )
    assert within.status == "DEGRADED"  # behind, and nobody runs it, but within the hour
    assert within.projections[0].status == "unassigned"
    assert (await check_ready(unattended)).status == "UP"  # lagging is not stopped


async def test_a_paused_projection_is_degraded(tmp_path: Path) -> None:
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    async with await bootstrap(BANK, settings) as app:
        assert await app.operations.pause("balances")
        health = await check_health(app, threshold=60, runs_projections=True)
        assert health.status == "DEGRADED"
        [balances] = health.projections
        assert (balances.status, balances.paused) == ("paused", True)
        assert balances.error is not None and "resumed" in balances.error
        assert await app.operations.resume("balances")
        assert (await check_health(app, threshold=60, runs_projections=True)).status == "UP"
