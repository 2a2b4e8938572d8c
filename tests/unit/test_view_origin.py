"""Views belong to one event store: views of another, or ahead of the log, are refused."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.bank import BANK, Deposit, GetBalance, OpenAccount
from twofold import ForeignViewsError, ProjectionStatus, Settings, bootstrap


def settings(folder: Path, events: str = "events.db", views: str = "views.db") -> Settings:
    return Settings(
        event_store=f"sqlite:///{folder}/{events}", read_store=f"sqlite:///{folder}/{views}"
    )


async def open_accounts(folder: Path, events: str, *owners: str, views: str = "views.db") -> int:
    async with await bootstrap(BANK, settings(folder, events, views)) as app:
        position = 0
        for owner in owners:
            position = (await app.dispatch(OpenAccount(account_id=owner, owner=owner))).position
        await app.wait_for_projections(position)
        return position


async def test_views_of_another_event_store_are_refused(tmp_path: Path) -> None:
    await open_accounts(tmp_path, "events.db", "a")
    # Another log, longer than the one the views were built from: only the identity tells
    # the two apart.
    await open_accounts(tmp_path, "other.db", "b", "c", views="other-views.db")
    async with await bootstrap(BANK, settings(tmp_path, "other.db")) as app:
        result = await app.dispatch(OpenAccount(account_id="d", owner="d"))
        runner = app.runner("balances")
        identity = await app.event_store.identity()
        assert runner.status is ProjectionStatus.REFUSED
        assert f"and this event store is {identity}" in (runner.error or "")
        assert "rebuild" in (runner.error or "")
        # Nothing reads views that would answer for another log.
        with pytest.raises(ForeignViewsError) as caught:
            await app.ask(GetBalance(account_id="a"))
        assert caught.value.projection == "balances"
        with pytest.raises(ForeignViewsError):
            await app.ask(GetBalance(account_id="c"), min_position=result.position)
        # Its checkpoint did not move: nothing was applied on top of the foreign views.
        assert (await app.read_store.state("balances")).checkpoint == 1


async def test_a_checkpoint_beyond_the_head_is_refused(tmp_path: Path) -> None:
    await open_accounts(tmp_path, "events.db", "a", "b", "c")
    for name in ("events.db", "events.db-wal", "events.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    # Views written before twofold recorded identities: only the position tells.
    with sqlite3.connect(tmp_path / "views.db") as views:
        views.execute("UPDATE twofold_checkpoints SET event_store = NULL")
    async with await bootstrap(BANK, settings(tmp_path)) as app:
        runner = app.runner("balances")
        assert runner.status is ProjectionStatus.REFUSED
        assert "up to position 3" in (runner.error or "")
        assert "ends at position 0" in (runner.error or "")
        result = await app.dispatch(OpenAccount(account_id="z", owner="z"))
        with pytest.raises(ForeignViewsError):
            await app.ask(GetBalance(account_id="a"))
        with pytest.raises(ForeignViewsError):
            await app.ask(GetBalance(account_id="z"), min_position=result.position)


async def test_rebuilding_from_the_new_store_ends_the_refusal(tmp_path: Path) -> None:
    await open_accounts(tmp_path, "events.db", "a", "b")
    async with await bootstrap(BANK, settings(tmp_path, "other.db")) as app:
        await app.dispatch(OpenAccount(account_id="x", owner="x"))
        assert app.runner("balances").status is ProjectionStatus.REFUSED
        await app.rebuild("balances")
        assert app.runner("balances").status is ProjectionStatus.RUNNING
        assert await app.ask(GetBalance(account_id="a")) is None
        assert await app.ask(GetBalance(account_id="x")) == Decimal(0)
        # The runner goes on with new events: the rebuild woke it.
        result = await app.dispatch(Deposit(account_id="x", amount=Decimal(5)))
        assert await app.ask(GetBalance(account_id="x"), min_position=result.position) == 5
        state = await app.read_store.state("balances")
        assert state.event_store == await app.event_store.identity()


async def test_views_of_the_same_store_are_taken_after_a_restart(tmp_path: Path) -> None:
    position = await open_accounts(tmp_path, "events.db", "a")
    async with await bootstrap(BANK, settings(tmp_path)) as app:
        assert app.runner("balances").status is ProjectionStatus.RUNNING
        assert await app.ask(GetBalance(account_id="a"), min_position=position) == 0


async def test_a_views_file_of_an_earlier_twofold_is_upgraded_in_place(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "views.db") as conn:  # as twofold 0.1 left it
        conn.executescript(
            """
            CREATE TABLE twofold_projections (name TEXT PRIMARY KEY, generation INTEGER NOT
                NULL, status TEXT NOT NULL, error TEXT, updated_at INTEGER, last_event_at
                INTEGER);
            CREATE TABLE twofold_checkpoints (projection TEXT NOT NULL, generation INTEGER NOT
                NULL, position INTEGER NOT NULL, PRIMARY KEY (projection, generation));
            INSERT INTO twofold_projections VALUES ('balances', 1, 'running', NULL, NULL, NULL);
            INSERT INTO twofold_checkpoints VALUES ('balances', 1, 0);
            """
        )
    conn.close()
    await open_accounts(tmp_path, "events.db", "a")
    async with await bootstrap(BANK, settings(tmp_path)) as app:
        state = await app.read_store.state("balances")
        assert (state.checkpoint, state.attempts, state.parked) == (1, 0, 0)
        assert state.event_store == await app.event_store.identity()
