"""Property: concurrent appenders never lose or double an event, on every local backend.

Hypothesis picks how many tasks append, to how many streams, how many events each append
carries, whether it appends at the version it read (retrying on ConcurrencyError) or at ANY,
and whether it retries the same append afterwards (as after a lost reply).
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.application.ports import EventStore
from twofold.errors import ConcurrencyError
from twofold.records import ANY, AppendResult, ExpectedVersion
from twofold.testing.event_store_contract import new_event, read_everything


@dataclass(frozen=True)
class Append:
    stream: int
    events: int
    at_read_version: bool
    retried: bool


appends = st.builds(
    Append,
    stream=st.integers(0, 4),
    events=st.integers(1, 4),
    at_read_version=st.booleans(),
    retried=st.booleans(),
)
plans = st.lists(st.lists(appends, min_size=1, max_size=8), min_size=1, max_size=12)


async def run_plan(store: EventStore, plan: list[list[Append]], streams: int) -> None:
    sent: list[uuid.UUID] = []
    results: list[AppendResult] = []

    async def appender(steps: list[Append]) -> None:
        for step in steps:
            stream = f"stream-{step.stream % streams}"
            events = [new_event() for _ in range(step.events)]
            expected: ExpectedVersion = ANY
            while True:
                if step.at_read_version:
                    expected = await store.stream_version(stream)
                try:
                    result = await store.append(stream, events, expected_version=expected)
                    break
                except ConcurrencyError:
                    continue
            if step.retried:
                assert await store.append(stream, events, expected_version=expected) == result
            sent.extend(event.event_id for event in events)
            results.append(result)

    await asyncio.gather(*(appender(steps) for steps in plan))

    stored = await read_everything(store)
    assert Counter(e.event_id for e in stored) == Counter(sent)
    assert len(set(sent)) == len(sent)
    positions = [e.position for e in stored]
    assert all(b > a for a, b in itertools.pairwise(positions))
    by_stream: dict[str, list[int]] = {}
    for event in stored:
        by_stream.setdefault(event.stream_id, []).append(event.stream_version)
    for versions in by_stream.values():
        assert versions == list(range(1, len(versions) + 1))
    for result in results:  # each append landed whole, at consecutive versions
        versions = [e.stream_version for e in result.events]
        assert versions == list(range(result.version - len(versions) + 1, result.version + 1))
        again = await store.read_stream(
            result.stream_id, from_version=versions[0], limit=len(versions)
        )
        assert again == list(result.events)


async def with_memory(check: Callable[[EventStore], Awaitable[None]]) -> None:
    store = InMemoryEventStore()
    await check(store)
    await store.close()


async def with_sqlite(check: Callable[[EventStore], Awaitable[None]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with SQLiteEventStore(Path(folder) / "events.db") as store:
            await check(store)


BACKENDS = {"memory": with_memory, "sqlite": with_sqlite}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans, streams=st.integers(1, 5))
def test_concurrent_appenders_never_lose_or_duplicate_events(
    backend: str, plan: list[list[Append]], streams: int
) -> None:
    asyncio.run(BACKENDS[backend](lambda store: run_plan(store, plan, streams)))
