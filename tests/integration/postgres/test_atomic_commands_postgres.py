"""On PostgreSQL: a command that changes two aggregates appends all or nothing, and an
idempotency key is stored with the events, so a retry after a crash gets its answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from tests.integration.atomic_commands import (
    SCENARIOS,
    retry_after_the_crash_gets_the_first_answer,
)
from tests.integration.test_atomic_commands import run_until_killed
from twofold.adapters.postgres import PostgresEventStore, PostgresIdempotencyStore
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.errors import IdempotencyKeyTakenError
from twofold.records import NO_STREAM, IdempotencyRecord, StreamAppend
from twofold.testing.event_store_contract import new_event, read_everything

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
async def test_commands_changing_two_aggregates(
    store: PostgresEventStore,
    scenario: Callable[[EventStore, IdempotencyStore], Awaitable[None]],
) -> None:
    await scenario(store, PostgresIdempotencyStore.of(store))


CHILD = r"""
import asyncio, sys
from tests.integration.atomic_commands import dies_after_commit, open_with_key_then_die
from twofold.adapters.postgres import PostgresEventStore, PostgresIdempotencyStore

async def main(url, schema):
    store = await dies_after_commit(PostgresEventStore).open(url, schema=schema)
    await open_with_key_then_die(store, PostgresIdempotencyStore.of(store))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_retry_after_a_crash_right_after_the_commit_gets_the_first_answer(
    postgres_url: str, pg_schema: str
) -> None:
    await asyncio.to_thread(run_until_killed, CHILD, postgres_url, pg_schema)
    store = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        await retry_after_the_crash_gets_the_first_answer(store, PostgresIdempotencyStore.of(store))
    finally:
        await store.close()


async def test_two_stores_appending_with_one_key_let_exactly_one_store(
    postgres_url: str, pg_schema: str
) -> None:
    # Two stores on one schema stand for two processes running the same keyed command.
    stores = [await PostgresEventStore.open(postgres_url, schema=pg_schema) for _ in range(2)]
    try:
        record = IdempotencyRecord(
            key="k1",
            fingerprint="fp",
            answer=lambda results: b"%d" % len(results),
            keep_for=timedelta(days=1),
        )
        outcomes = await asyncio.gather(
            *(
                store.append_streams(
                    [
                        StreamAppend(
                            stream_id=f"acct-{n}-{m}",
                            events=(new_event(),),
                            expected_version=NO_STREAM,
                        )
                        for m in range(2)
                    ],
                    idempotency=record,
                )
                for n, store in enumerate(stores * 3)
            ),
            return_exceptions=True,
        )
        won = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(won) == 1, outcomes
        assert all(
            isinstance(o, IdempotencyKeyTakenError)
            for o in outcomes
            if isinstance(o, BaseException)
        )
        stored = await read_everything(stores[0])
        assert [e.event_id for e in stored] == [e.event_id for r in won[0] for e in r.events]
        assert await PostgresIdempotencyStore.of(stores[0]).get("k1") == ("fp", b"2")
    finally:
        for store in stores:
            await store.close()
