"""Integration handlers: at least once, in order, with the event id, from the log or a bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from tests.unit.relay.fakes import FakeSource
from tests.unit.relay.ledger import Deposited, Frozen
from tests.unit.relay.test_bus_runner import Log
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.memory.relay_store import MemoryRelayStore
from twofold.application.failure import Backoff, RetryPolicy
from twofold.application.relay.handlers import (
    BusHandlerRunner,
    HandlerContext,
    IntegrationHandlers,
    LogHandlerRunner,
)
from twofold.application.relay.source import Delivery
from twofold.codec import Codec
from twofold.records import ANY

DEADLINE = 60.0


def mailer(
    seen: list[tuple[str, int]], done: asyncio.Event, *, count: int, fail_once: bool = False
) -> IntegrationHandlers:
    handlers = IntegrationHandlers("mailer")
    failed: set[str] = set()

    @handlers.on(Deposited)
    async def mail(event: Deposited, context: HandlerContext) -> None:
        if fail_once and str(context.event_id) not in failed:
            failed.add(str(context.event_id))
            raise ConnectionError("mail server down")
        seen.append((str(context.event_id), event.amount))
        if len(seen) >= count:
            done.set()

    return handlers


async def test_log_handlers_run_once_per_event_in_order_and_resume_after_their_checkpoint() -> None:
    codec = Codec([Deposited, Frozen])
    events, store = InMemoryEventStore(), MemoryRelayStore()
    for n in range(1, 6):
        await events.append(
            "a", [codec.new_event(Deposited(account="a", amount=n))], expected_version=ANY
        )
    await events.append("a", [codec.new_event(Frozen(account="a"))], expected_version=ANY)
    seen: list[tuple[str, int]] = []
    done = asyncio.Event()
    runner = LogHandlerRunner(
        mailer(seen, done, count=5, fail_once=True),
        event_store=events, store=store, codec=codec,
        policy=RetryPolicy(Backoff(initial=0.001, maximum=0.001)),
    )  # fmt: skip
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(done.wait(), DEADLINE)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    log = await events.read_all()
    assert seen == [(str(r.event_id), n) for n, r in enumerate(log[:5], start=1)]
    assert runner.failures == 5  # each effect failed once and was retried, not skipped
    assert (await store.checkpoint("handlers:mailer")).position == log[4].position

    await events.append(
        "a", [codec.new_event(Deposited(account="a", amount=9))], expected_version=ANY
    )
    done.clear()
    again = LogHandlerRunner(
        mailer(seen, done, count=6), event_store=events, store=store, codec=codec
    )
    task = asyncio.create_task(again.run())
    try:
        await asyncio.wait_for(done.wait(), DEADLINE)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [amount for _, amount in seen] == [1, 2, 3, 4, 5, 9]


class ListSource(FakeSource):
    def __init__(self, batches: list[list[Delivery]]) -> None:
        super().__init__()
        self.batches = batches

    async def receive(self, *, max_messages: int, timeout: float) -> list[Delivery]:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout)
        return []

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await super().ack(deliveries)


async def test_bus_handlers_acknowledge_after_the_effect_and_see_redeliveries_by_id() -> None:
    log = Log()
    first, second = log.deposit("a", 1), log.deposit("a", 2)
    source = ListSource([[first], [first, second]])  # the first one delivered again
    seen: list[tuple[str, int]] = []
    done = asyncio.Event()
    runner = BusHandlerRunner(
        mailer(seen, done, count=3), source=source, codec=Codec(), receive_timeout=0.01
    )
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(done.wait(), DEADLINE)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [amount for _, amount in seen] == [1, 1, 2]
    assert seen[0][0] == seen[1][0] == first.message.event_id  # the id to drop it by
    assert source.acked == [1, 1, 2]
