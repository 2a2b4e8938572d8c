"""Both idempotency stores keep the first answer given to a key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
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
    answers = await asyncio.gather(*(keys.put("k-1", f"fp-{n}", b"%d" % n) for n in range(10)))
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


SHORT = timedelta(milliseconds=200)


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def short_keys(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[InMemoryIdempotencyStore | SQLiteIdempotencyStore]:
    """Stores that keep an answer for SHORT only."""
    if request.param == "memory":
        yield InMemoryIdempotencyStore(keep_for=SHORT)
        return
    async with SQLiteEventStore(tmp_path / "events.db") as store:
        yield SQLiteIdempotencyStore(store, keep_for=SHORT)


async def test_an_answer_is_forgotten_after_keep_for(
    short_keys: InMemoryIdempotencyStore | SQLiteIdempotencyStore,
) -> None:
    assert await short_keys.put("k-1", "fp-a", b"first") == ("fp-a", b"first")
    assert await short_keys.put("k-1", "fp-b", b"second") == ("fp-a", b"first")
    await asyncio.sleep(SHORT.total_seconds() * 1.5)
    assert await short_keys.get("k-1") is None
    # A new answer takes the expired one's place, and is the first answer from then on.
    assert await short_keys.put("k-1", "fp-b", b"second") == ("fp-b", b"second")
    assert await short_keys.put("k-1", "fp-c", b"third") == ("fp-b", b"second")


async def test_prune_deletes_only_the_expired_answers(
    short_keys: InMemoryIdempotencyStore | SQLiteIdempotencyStore,
) -> None:
    for n in range(3):
        await short_keys.put(f"old-{n}", "fp", b"x")
    await asyncio.sleep(SHORT.total_seconds() * 1.5)
    await short_keys.put("fresh", "fp", b"y")
    assert await short_keys.prune() == 3
    assert await short_keys.prune() == 0
    assert await short_keys.get("fresh") == ("fp", b"y")


@pytest.mark.parametrize("keep_for", [timedelta(0), timedelta(seconds=-1), 60])
async def test_keep_for_must_be_a_positive_timedelta(keep_for: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_for"):
        InMemoryIdempotencyStore(keep_for=keep_for)  # type: ignore[arg-type]
    async with SQLiteEventStore(tmp_path / "events.db") as store:
        with pytest.raises(ValueError, match="keep_for"):
            SQLiteIdempotencyStore(store, keep_for=keep_for)  # type: ignore[arg-type]
