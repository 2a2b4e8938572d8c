"""The levels of /health: lag over the threshold is DOWN; paused is DEGRADED."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.bank import BANK, Deposit, OpenAccount
from twofold import App, Settings, ViewTransaction, bootstrap
from twofold.application.failure import CircuitBreaker
from twofold.errors import ConfigurationError
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


async def until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0  # a deadline for a broken mechanism, not a bound
    while not check():
        assert loop.time() < deadline, f"not reached in 30 s: {what}"
        await asyncio.sleep(0.01)


async def test_scheduled_verification_shows_a_divergence_in_health(tmp_path: Path) -> None:
    settings = Settings(
        event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db", verify_interval=0.01
    )
    async with await bootstrap(BANK, settings) as app:
        opened = await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
        await app.wait_for_projections(opened.position)
        ops = app.operations

        def verified_at(position: int) -> bool:
            report = ops.last_verify
            return report is not None and report.projections[0].position >= position

        await until(lambda: verified_at(opened.position), "a scheduled verification")
        health = await check_health(app, threshold=60, runs_projections=True)
        assert health.status == "UP" and health.verify is not None and health.verify.consistent

        def tamper(tx: ViewTransaction) -> None:
            tx.put("balances", "a1", {"owner": "mallory", "balance": "1000000", "version": 1})

        generation = (await app.read_store.state("balances")).generation
        await app.read_store.release_dead_letters("balances", generation, tamper, [])
        await until(
            lambda: ops.last_verify is not None and not ops.last_verify.consistent,
            "a verification that sees the tampered document",
        )
        health = await check_health(app, threshold=60, runs_projections=True)
        assert health.status == "DEGRADED"
        assert health.verify is not None
        assert "1 different" in health.verify.projections[0].summary()


def test_the_verify_interval_is_read_and_checked() -> None:
    assert Settings.from_env({"TWOFOLD_VERIFY_INTERVAL": "300"}).verify_interval == 300.0
    assert Settings.from_env({"TWOFOLD_VERIFY_INTERVAL": "off"}).verify_interval is None
    assert Settings.from_env({}).verify_interval is None
    with pytest.raises(ConfigurationError, match="TWOFOLD_VERIFY_INTERVAL must be"):
        Settings.from_env({"TWOFOLD_VERIFY_INTERVAL": "-1"})
    with pytest.raises(ConfigurationError, match="verify_interval must be"):
        Settings(verify_interval=0)


async def test_an_open_breaker_is_degraded(tmp_path: Path) -> None:
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    async with await bootstrap(BANK, settings) as app:
        breaker = CircuitBreaker(failure_threshold=1)
        app.add_breaker("bus", breaker)
        breaker.failure(ConnectionError("broker away"))
        health = await check_health(app, threshold=60, runs_projections=True)
        assert health.status == "DEGRADED"
        bus = next(b for b in health.breakers if b.name == "bus")
        assert (bus.state, bus.opened, bus.last_error) == (
            "open",
            1,
            "ConnectionError: broker away",
        )
        assert [b.name for b in health.breakers] == ["stores:balances", "bus"]
        breaker.success()
        assert (await check_health(app, threshold=60, runs_projections=True)).status == "UP"
