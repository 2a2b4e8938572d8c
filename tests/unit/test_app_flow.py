"""The core flow on the in-memory event store and the SQLite read store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.bank import (
    BANK,
    Account,
    Deposit,
    GetBalance,
    InsufficientFunds,
    OpenAccount,
    Touch,
    Withdraw,
)
from twofold import (
    AggregateExistsError,
    AggregateNotFoundError,
    App,
    ConsistencyTimeoutError,
    PositionBeyondHeadError,
    Settings,
    ValidationError,
    bootstrap,
)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    async with await bootstrap(BANK, settings) as running:
        yield running


async def test_command_result_carries_version_and_position(app: App) -> None:
    opened = await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    deposited = await app.dispatch(Deposit(account_id="a1", amount=Decimal("12.50")))
    assert (opened.aggregate_id, opened.version) == ("a1", 1)
    assert deposited.version == 2
    assert deposited.position > opened.position
    assert [e.type for e in deposited.events] == ["MoneyDeposited"]


async def test_query_with_min_position_reads_own_write(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    result = await app.dispatch(Deposit(account_id="a1", amount=Decimal("7.25")))
    balance = await app.ask(GetBalance(account_id="a1"), min_position=result.position)
    assert balance == Decimal("7.25")


async def test_query_times_out_naming_how_far_behind(tmp_path: Path) -> None:
    settings = Settings(
        event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db", projections="off"
    )
    async with await bootstrap(BANK, settings) as idle:  # nothing applies the events
        await idle.dispatch(OpenAccount(account_id="a1", owner="ann"))
        result = await idle.dispatch(Deposit(account_id="a1", amount=Decimal(1)))
        with pytest.raises(ConsistencyTimeoutError) as caught:
            await idle.ask(GetBalance(account_id="a1"), min_position=result.position, timeout=0.05)
    assert caught.value.projection == "balances"
    assert caught.value.behind == 2
    assert "2 behind" in str(caught.value)


async def test_min_position_beyond_the_head_says_the_position_does_not_exist(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    head = await app.event_store.head_position()
    with pytest.raises(PositionBeyondHeadError) as caught:
        await app.ask(GetBalance(account_id="a1"), min_position=head + 5, timeout=0.05)
    assert (caught.value.wanted, caught.value.head) == (head + 5, head)
    assert f"position {head + 5} does not exist yet" in str(caught.value)
    assert f"ends at position {head}" in str(caught.value)


async def test_closing_the_app_leaves_no_task_behind(tmp_path: Path) -> None:
    settings = Settings(event_store="memory://", read_store=f"sqlite:///{tmp_path}/views.db")
    app = await bootstrap(BANK, settings)
    await app.start()
    result = await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await app.wait_for_projections(result.position)  # the runner follows live events now
    await app.close()
    # A pending task left here is destroyed with the loop: "Task was destroyed but it is
    # pending!" once per projection.
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


async def test_validation_rejects_before_anything_is_recorded(app: App) -> None:
    with pytest.raises(ValidationError) as caught:
        await app.dispatch(OpenAccount(account_id="a1", owner=" "))
    assert caught.value.errors[0].field == "owner"
    assert await app.event_store.head_position() == 0


async def test_domain_rule_records_nothing(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    with pytest.raises(InsufficientFunds):
        await app.dispatch(Withdraw(account_id="a1", amount=Decimal(1)))
    assert await app.event_store.head_position() == 1


async def test_creating_an_existing_aggregate_is_refused(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    with pytest.raises(AggregateExistsError):
        await app.dispatch(OpenAccount(account_id="a1", owner="bob"))


async def test_command_to_missing_aggregate_is_not_found(app: App) -> None:
    with pytest.raises(AggregateNotFoundError):
        await app.dispatch(Deposit(account_id="nope", amount=Decimal(1)))


async def test_command_that_touches_nothing_records_nothing(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await app.dispatch(Touch(account_id="a1"))
    assert await app.event_store.head_position() == 1


async def test_command_that_changes_nothing_answers_its_aggregates_version_and_position(
    app: App,
) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    deposited = await app.dispatch(Deposit(account_id="a1", amount=Decimal(3)))
    await app.dispatch(OpenAccount(account_id="a2", owner="bob"))  # the head moves on
    result = await app.dispatch(Touch(account_id="a1"))
    assert (result.version, result.position, result.events) == (2, deposited.position, ())
    balance = await app.ask(GetBalance(account_id="a1"), min_position=result.position)
    assert balance == Decimal(3)


async def test_idempotency_key_returns_first_result_and_records_nothing(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    first = await app.dispatch(Deposit(account_id="a1", amount=Decimal(5)), idempotency_key="k")
    again = await app.dispatch(Deposit(account_id="a1", amount=Decimal(5)), idempotency_key="k")
    assert again.replayed and (again.position, again.version) == (first.position, first.version)
    assert await app.event_store.head_position() == 2


async def test_idempotency_key_with_other_command_is_refused(app: App) -> None:
    from twofold.errors import IdempotencyKeyReusedError

    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await app.dispatch(Deposit(account_id="a1", amount=Decimal(5)), idempotency_key="k")
    with pytest.raises(IdempotencyKeyReusedError):
        await app.dispatch(Deposit(account_id="a1", amount=Decimal(6)), idempotency_key="k")
    assert await app.event_store.head_position() == 2


async def test_expected_version_mismatch_is_a_conflict(app: App) -> None:
    from twofold import ConcurrencyError

    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await app.dispatch(Deposit(account_id="a1", amount=Decimal(5)))
    with pytest.raises(ConcurrencyError) as caught:
        await app.dispatch(Deposit(account_id="a1", amount=Decimal(5)), expected_version=1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)


async def test_concurrent_commands_on_one_stream_all_land_through_retry(app: App) -> None:
    import asyncio

    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    await asyncio.gather(
        *(app.dispatch(Deposit(account_id="a1", amount=Decimal(1))) for _ in range(20))
    )
    account = await app.repository.get(Account, "a1")
    assert account.balance == Decimal(20) and account.version == 21


async def test_snapshot_is_used_and_state_matches_full_replay(app: App) -> None:
    await app.dispatch(OpenAccount(account_id="a1", owner="ann"))
    for _ in range(11):
        await app.dispatch(Deposit(account_id="a1", amount=Decimal("1.10")))
    snapshot = await app.event_store.load_snapshot(Account.stream_id_for("a1"))
    assert snapshot is not None and snapshot.version == 10
    loaded = await app.repository.get(Account, "a1")
    assert loaded.balance == Decimal("12.10") and loaded.version == 12 and loaded.owner == "ann"


async def test_rebuild_gives_identical_views(app: App) -> None:
    for i in range(30):
        await app.dispatch(OpenAccount(account_id=f"a{i}", owner=f"o{i % 3}"))
        await app.dispatch(Deposit(account_id=f"a{i}", amount=Decimal(i + 1)))
    await app.wait_for_projections()
    before = await app.read_store.find("balances", order_by=[("key", "asc")])
    seen: list[tuple[int, int]] = []
    head = await app.event_store.head_position()
    assert await app.rebuild("balances", progress=lambda *p: seen.append(p)) == head
    after = await app.read_store.find("balances", order_by=[("key", "asc")])
    assert before == after and len(after) == 30
    assert seen == [(head, head)]  # one batch (60 events): reported once
    state = await app.read_store.state("balances")
    assert state.generation == 2
    result = await app.dispatch(Deposit(account_id="a0", amount=Decimal(1)))
    assert await app.ask(GetBalance(account_id="a0"), min_position=result.position) == 2
