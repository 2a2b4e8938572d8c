"""What an App built by bootstrap records: commands, appends, queries and their waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.bank import BANK, Deposit, GetBalance, OpenAccount
from twofold import (
    AggregateExistsError,
    App,
    ConsistencyTimeoutError,
    Settings,
    ViewTransaction,
    bootstrap,
)
from twofold.application.metrics import Family, quantile


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    # Projections off: the view stays where it is, so a query's wait is ours to decide.
    settings = Settings(
        event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db", projections="off"
    )
    async with await bootstrap(BANK, settings) as running:
        yield running


async def families(app: App) -> dict[str, Family]:
    return {family.name: family for family in await app.metrics.snapshot()}


def sample(found: dict[str, Family], family: str, name: str, **labels: str) -> float:
    for each in found[family].samples:
        if each.name == name and dict(each.labels) == labels:
            return each.value
    return 0.0


async def test_commands_and_their_appends_are_counted_and_timed(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await app.dispatch(Deposit(account_id="a1", amount=Decimal("5")))
    with pytest.raises(AggregateExistsError):
        await app.dispatch(OpenAccount(account_id="a1", owner="bob"))

    found = await families(app)
    handled = "twofold_command_duration_seconds"
    assert sample(found, handled, handled + "_count", command="OpenAccount") == 2
    assert sample(found, handled, handled + "_count", command="Deposit") == 1
    errors = sample(
        found,
        "twofold_command_errors",
        "twofold_command_errors_total",
        command="OpenAccount",
        error="AggregateExistsError",
    )
    assert errors == 1
    appends = "twofold_append_duration_seconds"
    assert sample(found, appends, appends + "_count") == 3  # the refused one included
    assert (
        sample(
            found, "twofold_append_errors", "twofold_append_errors_total", error="ConcurrencyError"
        )
        == 1
    )
    assert sample(found, "twofold_append_events", "twofold_append_events_sum") == 2
    assert sample(found, "twofold_append_events", "twofold_append_events_count") == 2
    p99 = quantile(found["twofold_command_duration_seconds"], 0.99, {"command": "Deposit"})
    assert p99 is not None and p99 > 0


async def test_a_query_that_times_out_waiting_is_counted(app: App) -> None:
    opened = await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    with pytest.raises(ConsistencyTimeoutError):
        await app.ask(GetBalance(account_id="a1"), min_position=opened.position, timeout=0)
    # Not asked to wait: no wait, no timeout.
    await app.ask(GetBalance(account_id="a1"))

    found = await families(app)
    query = {"query": "GetBalance"}
    asked = "twofold_query_duration_seconds"
    assert sample(found, asked, asked + "_count", **query) == 2
    assert (
        sample(
            found,
            "twofold_query_position_waits",
            "twofold_query_position_waits_total",
            **query,
        )
        == 1
    )
    assert (
        sample(
            found,
            "twofold_query_position_timeouts",
            "twofold_query_position_timeouts_total",
            **query,
        )
        == 1
    )
    assert (
        sample(
            found,
            "twofold_query_errors",
            "twofold_query_errors_total",
            query="GetBalance",
            error="ConsistencyTimeoutError",
        )
        == 1
    )


async def test_projection_gauges_are_read_at_each_scrape(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    found = await families(app)
    [name] = list(app.runners)
    projection = {"projection": name}
    position = "twofold_projection_position"
    assert sample(found, position, position, **projection) == 0
    lag = "twofold_projection_lag_events"
    assert sample(found, lag, lag, **projection) == 1
    seconds = "twofold_projection_lag_seconds"
    assert sample(found, seconds, seconds, **projection) >= 0
    assert sample(found, "twofold_log_head_position", "twofold_log_head_position") == 1

    await app.runner(name).catch_up()  # apply here, as a running projection would
    found = await families(app)
    assert sample(found, position, position, **projection) == 1
    assert sample(found, lag, lag, **projection) == 0
    assert sample(found, seconds, seconds, **projection) == 0


async def test_verification_results_are_recorded(tmp_path: Path) -> None:
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    async with await bootstrap(BANK, settings) as app:
        opened = await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
        await app.dispatch(OpenAccount(account_id="a2", owner="bob"))
        last = await app.dispatch(Deposit(account_id="a1", amount=Decimal("5")))
        await app.wait_for_projections(last.position)
        batches = "twofold_projection_batch_events"
        applied = sample(await families(app), batches, batches + "_sum", projection="balances")
        assert applied == 3
        clean = await app.operations.verify()
        assert clean.consistent

        found = await families(app)
        stamp = "twofold_verify_last_run_timestamp_seconds"
        assert sample(found, stamp, stamp) == clean.checked_at.timestamp()
        divergent = "twofold_verify_divergent_documents"
        assert sample(found, divergent, divergent, projection="balances") == 0
        consistent = "twofold_verify_consistent"
        assert sample(found, consistent, consistent, projection="balances") == 1
        runs = ("twofold_verify_runs", "twofold_verify_runs_total")
        assert sample(found, *runs, result="clean") == 1
        assert sample(found, *runs, result="divergent") == 0

        def tamper(tx: ViewTransaction) -> None:
            tx.put("balances", "a1", {"owner": "mallory", "balance": "1000000", "version": 1})
            tx.delete("balances", "a2")

        generation = (await app.read_store.state("balances")).generation
        await app.read_store.release_dead_letters("balances", generation, tamper, [])
        assert opened.position < last.position  # tampered behind the projection's back
        report = await app.operations.verify("balances")
        assert not report.consistent

        found = await families(app)
        assert sample(found, stamp, stamp) == report.checked_at.timestamp()
        assert sample(found, divergent, divergent, projection="balances") == 2
        assert sample(found, consistent, consistent, projection="balances") == 0
        assert sample(found, *runs, result="clean") == 1
        assert sample(found, *runs, result="divergent") == 1
        # The replays verify made are not the projection's work: its figures did not move.
        assert sample(found, batches, batches + "_sum", projection="balances") == applied
