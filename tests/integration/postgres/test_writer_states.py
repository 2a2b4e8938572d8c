"""The group-commit writer goes through its named states (``append.writer.WriterState``)."""

from __future__ import annotations

import asyncio

import pytest

from twofold.adapters.postgres import PostgresEventStore
from twofold.adapters.postgres.append.writer import BatchWriter, WriterState
from twofold.errors import StoreClosedError
from twofold.records import NO_STREAM
from twofold.testing.event_store_contract import new_event

pytestmark = pytest.mark.postgres


async def _until_idle(writer: BatchWriter) -> None:
    """Yield loop turns until the writer task has finished (its notification included)."""
    deadline = asyncio.get_running_loop().time() + 30  # a guard against a hang, not a wait
    while writer.state is not WriterState.IDLE:
        assert asyncio.get_running_loop().time() < deadline, writer.state
        await asyncio.sleep(0)


def _writer(store: PostgresEventStore) -> BatchWriter:
    writer = store._writer  # the state is what this test is about
    assert isinstance(writer, BatchWriter)
    return writer


async def test_a_lone_append_gathers_then_is_sent_on_the_loop_and_the_writer_is_idle_again(
    store: PostgresEventStore,
) -> None:
    writer = _writer(store)
    # The first append opens the loop path's connection (the writer task does that).
    await store.append("s-0", [new_event()], expected_version=NO_STREAM)
    await _until_idle(writer)
    task = asyncio.ensure_future(store.append("s-1", [new_event()], expected_version=NO_STREAM))
    await asyncio.sleep(0)  # one loop turn: the append has queued itself, nothing more
    assert writer.state is WriterState.GATHERING
    seen = {writer.state}
    while not task.done():
        seen.add(writer.state)
        await asyncio.sleep(0)
    assert (await task).version == 1
    assert WriterState.SENDING in seen
    assert WriterState.WRITING not in seen  # no task in between on the lone append's path


async def test_appends_made_in_one_turn_are_written_by_the_writer_task_as_one_batch(
    store: PostgresEventStore,
) -> None:
    writer = _writer(store)
    appends = [store.append(f"s-{n}", [new_event()], expected_version=NO_STREAM) for n in range(3)]
    task = asyncio.ensure_future(asyncio.gather(*appends))
    seen: set[WriterState] = set()
    while not task.done():
        seen.add(writer.state)
        await asyncio.sleep(0)
    positions = [result.position for result in await task]
    assert len(set(positions)) == 3
    assert WriterState.WRITING in seen
    assert WriterState.SENDING not in seen
    await _until_idle(writer)


async def test_a_closed_writer_refuses_appends(postgres_url: str, pg_schema: str) -> None:
    store = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    await store.append("s-1", [new_event()], expected_version=NO_STREAM)
    await store.close()
    writer = _writer(store)
    assert writer.state is WriterState.CLOSED
    with pytest.raises(StoreClosedError):
        await writer.append("s-2", [new_event()], NO_STREAM)
