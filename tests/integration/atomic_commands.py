"""Scenarios of commands that change two aggregates, and of idempotency keys across a crash.

Each runs on a real event store given by the test (memory, SQLite, PostgreSQL), through the
CommandBus with the default middleware, as an application runs them.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tests.unit.bank import (
    Account,
    Deposit,
    OpenAccount,
    Withdraw,
    deposit,
    open_account,
    withdraw,
)
from twofold import Command, CommandBus, CommandContext, ConcurrencyError, Repository
from twofold.application.middleware import default_middleware
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.codec import Codec

if TYPE_CHECKING:
    from twofold.records import (
        AppendResult,
        ExpectedVersion,
        IdempotencyRecord,
        NewEvent,
        StreamAppend,
    )


class Transfer(Command):
    source: str
    target: str
    amount: Decimal


Interference = Callable[[CommandBus, Transfer, int], Awaitable[None]]


def bank_bus(
    store: EventStore, keys: IdempotencyStore | None, interfere: Interference | None = None
) -> tuple[CommandBus, list[int]]:
    """The bank's commands plus Transfer; ``interfere(bus, command, attempt)`` runs inside
    each Transfer attempt, after both accounts were loaded. Returns the bus and a list that
    counts the attempts."""
    bus = CommandBus(Repository(store, Codec()), middleware=default_middleware(keys))
    attempts: list[int] = []

    async def transfer(command: Transfer, ctx: CommandContext) -> None:
        source = await ctx.load(Account, command.source)
        target = await ctx.load(Account, command.target)
        attempts.append(len(attempts) + 1)
        if interfere is not None:
            await interfere(bus, command, len(attempts))
        source.withdraw(command.amount)
        target.deposit(command.amount)

    bus.register(OpenAccount, open_account)
    bus.register(Deposit, deposit)
    bus.register(Withdraw, withdraw)
    bus.register(Transfer, transfer)
    return bus, attempts


async def open_two_accounts(bus: CommandBus) -> None:
    await bus.dispatch(OpenAccount(account_id="a", owner="ann"))
    await bus.dispatch(Deposit(account_id="a", amount=Decimal(100)))
    await bus.dispatch(OpenAccount(account_id="b", owner="bob"))


async def types_of(store: EventStore, stream_id: str) -> list[str]:
    return [event.type for event in await store.read_stream(stream_id)]


async def another_writer_deposits_to_the_target(
    bus: CommandBus, command: Transfer, attempt: int
) -> None:
    """Another writer changes the target after every attempt loaded it: each conflicts."""
    await bus.dispatch(Deposit(account_id=command.target, amount=Decimal(1)))


async def another_writer_deposits_once(bus: CommandBus, command: Transfer, attempt: int) -> None:
    if attempt == 1:
        await bus.dispatch(Deposit(account_id=command.target, amount=Decimal(1)))


# -- the scenarios ----------------------------------------------------------------------


async def transfer_conflicting_on_every_attempt_stores_nothing(
    store: EventStore, keys: IdempotencyStore
) -> None:
    bus, attempts = bank_bus(store, keys, another_writer_deposits_to_the_target)
    await open_two_accounts(bus)
    try:
        await bus.dispatch(Transfer(source="a", target="b", amount=Decimal(10)))
    except ConcurrencyError as exc:
        assert exc.stream_id == "Account-b"
    else:
        raise AssertionError("every attempt conflicted on b, yet the transfer succeeded")
    assert len(attempts) == 4  # the retry middleware's bound
    # No stray debit: the source keeps exactly what it had before the transfer.
    assert await types_of(store, "Account-a") == ["AccountOpened", "MoneyDeposited"]
    assert await types_of(store, "Account-b") == ["AccountOpened"] + ["MoneyDeposited"] * 4


async def transfer_retried_after_a_conflict_debits_once(
    store: EventStore, keys: IdempotencyStore
) -> None:
    bus, attempts = bank_bus(store, keys, another_writer_deposits_once)
    await open_two_accounts(bus)
    result = await bus.dispatch(Transfer(source="a", target="b", amount=Decimal(10)))
    assert len(attempts) == 2
    assert await types_of(store, "Account-a") == [
        "AccountOpened",
        "MoneyDeposited",
        "MoneyWithdrawn",
    ]
    assert await types_of(store, "Account-b") == ["AccountOpened", "MoneyDeposited"] * 1 + [
        "MoneyDeposited",
    ]
    # The answer describes the last aggregate, and its position covers both streams.
    assert (result.aggregate_id, result.stream_id, result.version) == ("b", "Account-b", 3)
    assert [event.stream_id for event in result.events] == ["Account-a", "Account-b"]
    assert result.position == max(event.position for event in result.events)
    assert result.position == await store.head_position()


async def idempotent_transfer_is_answered_once(store: EventStore, keys: IdempotencyStore) -> None:
    bus, attempts = bank_bus(store, keys)
    await open_two_accounts(bus)
    command = Transfer(source="a", target="b", amount=Decimal(10))
    first = await bus.dispatch(command, idempotency_key="t-1")
    again = await bus.dispatch(command, idempotency_key="t-1")
    assert len(attempts) == 1
    assert again.replayed and not first.replayed
    assert (again.aggregate_id, again.version, again.position) == (
        first.aggregate_id,
        first.version,
        first.position,
    )
    assert await types_of(store, "Account-a") == [
        "AccountOpened",
        "MoneyDeposited",
        "MoneyWithdrawn",
    ]


# -- a crash between the commit and the answer --------------------------------------------


def dies_after_commit(store_class: type[Any]) -> type[Any]:
    """``store_class`` whose process is killed (SIGKILL) as soon as an append committed:
    the append is stored, and nothing after it in the command's path ran."""

    class DiesAfterCommit(store_class):  # type: ignore[misc]
        async def append(
            self, stream_id: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion
        ) -> AppendResult:
            result: AppendResult = await super().append(
                stream_id, events, expected_version=expected_version
            )
            _die()
            return result

        async def append_streams(
            self,
            appends: Sequence[StreamAppend],
            *,
            idempotency: IdempotencyRecord | None = None,
        ) -> tuple[AppendResult, ...]:
            results: tuple[AppendResult, ...] = await super().append_streams(
                appends, idempotency=idempotency
            )
            _die()
            return results

    return DiesAfterCommit


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


OPEN_A = OpenAccount(account_id="a", owner="ann")


async def open_with_key_then_die(store: EventStore, keys: IdempotencyStore) -> None:
    """In the child: open account a with an idempotency key, in a store that dies after
    the commit."""
    bus, _ = bank_bus(store, keys)
    await bus.dispatch(OPEN_A, idempotency_key="open-a")
    raise AssertionError("the store should have killed this process after the commit")


async def retry_after_the_crash_gets_the_first_answer(
    store: EventStore, keys: IdempotencyStore
) -> None:
    bus, _ = bank_bus(store, keys)
    assert await types_of(store, "Account-a") == ["AccountOpened"]  # the crash kept it
    again = await bus.dispatch(OPEN_A, idempotency_key="open-a")
    assert again.replayed
    assert (again.aggregate_id, again.version, again.position) == ("a", 1, 1)
    assert await store.head_position() == 1


SCENARIOS: Sequence[Callable[[EventStore, IdempotencyStore], Awaitable[None]]] = (
    transfer_conflicting_on_every_attempt_stores_nothing,
    transfer_retried_after_a_conflict_debits_once,
    idempotent_transfer_is_answered_once,
)
