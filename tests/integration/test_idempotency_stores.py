"""Both idempotency stores keep the first answer given to a key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from twofold.adapters.memory.idempotency import InMemoryIdempotencyStore
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.idempotency import SQLiteIdempotencyStore
from twofold.application.ports import IdempotencyStore


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def keys(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IdempotencyStore]:
    if request.param == "memory":
        yield InMemoryIdempotencyStore()
        return
    async with SQLiteEventStore(tmp_path / "events.db") as store:
        yield SQLiteIdempotencyStore(store)


async def test_get_of_unknown_key_is_none(keys: IdempotencyStore) -> None:
    assert await keys.get("k-1") is None


async def test_put_stores_the_first_answer_and_returns_it_later(keys: IdempotencyStore) -> None:
    assert await keys.put("k-1", "fp-a", b"first") == ("fp-a", b"first")
    assert await keys.put("k-1", "fp-b", b"second") == ("fp-a", b"first")
    assert await keys.get("k-1") == ("fp-a", b"first")


async def test_concurrent_puts_agree_on_one_answer(keys: IdempotencyStore) -> None:
    answers = await asyncio.gather(
        *(keys.put("k-1", f"fp-{n}", b"%d" % n) for n in range(10))
    )
    assert len(set(answers)) == 1


async def test_empty_key_is_refused(keys: IdempotencyStore) -> None:
    with pytest.raises(ValueError, match="idempotency key"):
        await keys.put("", "fp", b"x")


async def test_sqlite_keys_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteEventStore(path) as store:
        await SQLiteIdempotencyStore(store).put("k-1", "fp", b"answer")
    async with SQLiteEventStore(path) as store:
        assert await SQLiteIdempotencyStore(store).get("k-1") == ("fp", b"answer")


def test_sqlite_keys_need_the_event_store() -> None:
    with pytest.raises(TypeError, match=r"SQLiteIdempotencyStore\(store\)"):
        SQLiteIdempotencyStore("events.db")  # type: ignore[arg-type]
