"""Events no view of the shop can take, appended straight to a log (as a write side that let
them through would): a projection fails on them whatever it retries."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from twofold.application.ports import EventStore
from twofold.bootstrap import open_event_store
from twofold.codec import Codec
from twofold.examples import shop
from twofold.records import NO_STREAM, STREAM_EXISTS, NewEvent

HUGE = 10**40
"""A quantity whose average order amount overflows the orders view's decimal context."""

_codec = Codec(shop.EVENTS)


def poison_order(order_id: str, customer_id: str = "u1") -> list[NewEvent]:
    """An order of HUGE pens, then its cancellation: two events the orders view cannot take
    (the second because the first of its stream is parked)."""
    line = shop.OrderItem(product_id="p1", quantity=HUGE, price=Decimal("1.50"))
    created = shop.OrderCreated(
        order_id=order_id, customer_id=customer_id, items=(line,), total_amount=HUGE * line.price
    )
    cancelled = shop.OrderCancelled(order_id=order_id, reason="too many")
    return [_codec.new_event(created), _codec.new_event(cancelled)]


def renamed_with_nul(user_id: str, old_name: str = "Ann") -> NewEvent:
    """A rename whose name holds a NUL: PostgreSQL text (and jsonb) cannot store it."""
    renamed = shop.UserRenamed(user_id=user_id, old_name=old_name, new_name="x\x00y")
    return _codec.new_event(renamed)


async def append(store: EventStore, stream_id: str, events: list[NewEvent]) -> int:
    """Append ``events`` to ``stream_id`` (new or not); the position of the last."""
    version = await store.stream_version(stream_id)
    result = await store.append(
        stream_id, events, expected_version=STREAM_EXISTS if version else NO_STREAM
    )
    return result.position


def append_to(url: str, stream_id: str, events: list[NewEvent]) -> int:
    """``append`` to the event store at ``url``, from outside the server's process."""

    async def run() -> int:
        store, _ = await open_event_store(url)
        try:
            return await append(store, stream_id, events)
        finally:
            await store.close()

    return asyncio.run(run())
