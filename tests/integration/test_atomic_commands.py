"""A command that changes two aggregates appends all or nothing, on memory and SQLite;
an idempotency key is stored with the events, so a retry after a crash gets its answer.

PostgreSQL runs the same scenarios in tests/integration/postgres.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.integration.atomic_commands import (
    SCENARIOS,
    retry_after_the_crash_gets_the_first_answer,
)
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.memory.idempotency import InMemoryIdempotencyStore
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.idempotency import SQLiteIdempotencyStore
from twofold.application.ports import EventStore, IdempotencyStore

ROOT = Path(__file__).resolve().parents[2]
Stores = tuple[EventStore, IdempotencyStore]


@pytest.fixture(params=["memory", "sqlite"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    if request.param == "memory":
        memory = InMemoryEventStore()
        yield memory, InMemoryIdempotencyStore(memory)
        return
    async with SQLiteEventStore(tmp_path / "events.db") as store:
        yield store, SQLiteIdempotencyStore(store)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
async def test_commands_changing_two_aggregates(
    stores: Stores, scenario: Callable[[EventStore, IdempotencyStore], Awaitable[None]]
) -> None:
    await scenario(*stores)


CHILD = r"""
import asyncio, sys
from tests.integration.atomic_commands import dies_after_commit, open_with_key_then_die
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.idempotency import SQLiteIdempotencyStore

async def main(path):
    store = await dies_after_commit(SQLiteEventStore).open(path)
    await open_with_key_then_die(store, SQLiteIdempotencyStore(store))

asyncio.run(main(sys.argv[1]))
"""


def run_until_killed(child: str, *args: str) -> None:
    """Run ``child`` with ``args``; it must end killed by SIGKILL (its store's doing)."""
    done = subprocess.run(
        [sys.executable, "-c", child, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


async def test_a_retry_after_a_crash_right_after_the_commit_gets_the_first_answer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    await asyncio.to_thread(run_until_killed, CHILD, str(path))
    async with SQLiteEventStore(path) as store:
        await retry_after_the_crash_gets_the_first_answer(store, SQLiteIdempotencyStore(store))
