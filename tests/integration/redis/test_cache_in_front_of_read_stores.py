"""Redis in front of the real SQLite and PostgreSQL read stores: the refill race, a
rebuild's switch, and reads that keep answering while Redis dies, hangs and comes back."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.redis.conftest import OwnRedis
from tests.integration.redis.world import World, open_world
from twofold.application.cache import CacheSettings, CacheState

pytestmark = pytest.mark.parametrize("kind", ["sqlite", "postgres"])


async def _world(
    request: pytest.FixtureRequest,
    kind: str,
    tmp_path: Path,
    redis_url: str,
    settings: CacheSettings,
) -> World:
    postgres = None
    if kind == "postgres":
        postgres = (request.getfixturevalue("postgres_url"), request.getfixturevalue("pg_schema"))
    return await open_world(
        kind, redis_url=redis_url, settings=settings, tmp_path=tmp_path, postgres=postgres
    )


@pytest.fixture
async def world(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path, redis_url: str, namespace: str
) -> AsyncIterator[World]:
    opened = await _world(
        request, kind, tmp_path, redis_url, CacheSettings(namespace=namespace, timeout=30)
    )
    try:
        yield opened
    finally:
        await opened.close()


def _raw(world: World, key: str) -> bytes | None:
    with redis.Redis.from_url(world.cache.url) as client:
        epoch = client.hget(world.cache.meta_key("orders"), "epoch")
        assert epoch is not None
        from twofold.application.cache import Slot

        value = client.get(world.cache.slot_key(Slot("orders", "orders", key), epoch.decode()))
        return None if value is None else bytes(value)


async def test_a_reader_held_across_a_commit_cannot_store_the_stale_document(
    world: World,
) -> None:
    await world.commit(1, **{"o-1": {"status": "open", "n": 1}})
    world.loader.hold()
    slow = asyncio.create_task(world.views.get("orders", "o-1"))
    await world.loader.loaded.wait()  # it read n=1 at position 1 and waits to store it
    await world.commit(2, **{"o-1": {"status": "paid", "n": 2}})
    world.loader.release()
    assert await slow == {"status": "open", "n": 1}  # what it read, answered, not stored
    assert world.views.metrics.refused_older == 1
    held = _raw(world, "o-1")
    assert held is not None and held.startswith(b"t2:")  # the commit's tombstone stays
    assert await world.views.get("orders", "o-1") == {"status": "paid", "n": 2}
    assert await world.views.get("orders", "o-1") == {"status": "paid", "n": 2}
    assert world.views.metrics.hits == 1


async def test_a_deleted_document_is_not_served_from_the_cache(world: World) -> None:
    await world.commit(1, **{"o-1": {"status": "open"}})
    assert await world.views.get("orders", "o-1") == {"status": "open"}
    assert await world.views.get("orders", "o-1") == {"status": "open"}
    await world.commit(2, **{"o-1": None})
    assert await world.views.get("orders", "o-1") is None
    assert await world.views.get("orders", "o-1") is None  # "not found", cached
    assert world.views.metrics.hits == 2


async def test_a_rebuild_switch_never_serves_the_old_copy(world: World) -> None:
    await world.commit(3, **{"o-1": {"status": "open", "copy": 1}})
    assert await world.views.get("orders", "o-1") == {"status": "open", "copy": 1}
    assert await world.views.get("orders", "o-1") == {"status": "open", "copy": 1}
    assert world.views.metrics.hits == 1
    # A reader loads from the old copy and is held past the switch.
    world.loader.hold()
    slow = asyncio.create_task(world.views.get_json("orders", "o-2"))
    await world.loader.loaded.wait()
    copies: dict[str, dict[str, Any]] = {"o-1": {"status": "open", "copy": 2}, "o-2": {"copy": 2}}
    await world.rebuild(**copies)
    world.loader.release()
    assert await slow is None  # o-2 did not exist in the old copy; that answer is not kept
    assert world.views.metrics.refused_older == 1
    for _ in range(3):
        assert await world.views.get("orders", "o-1") == {"status": "open", "copy": 2}
        assert await world.views.get("orders", "o-2") == {"copy": 2}


async def test_list_answers_follow_commits(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path, redis_url: str, namespace: str
) -> None:
    settings = CacheSettings(namespace=namespace, timeout=30, lists=frozenset({"orders"}))
    world = await _world(request, kind, tmp_path, redis_url, settings)
    try:
        await world.commit(1, **{"o-1": {"status": "open"}, "o-2": {"status": "paid"}})
        for _ in range(2):
            assert await world.views.find("orders", where={"status": "open"}) == [
                {"status": "open"}
            ]
            assert await world.views.count("orders") == 2
        assert world.views.metrics.hits == 2
        await world.commit(2, **{"o-3": {"status": "open"}})
        assert await world.views.find(
            "orders", where={"status": "open"}, order_by=[("key", "desc")]
        ) == [{"status": "open"}, {"status": "open"}]
        assert await world.views.count("orders") == 3
    finally:
        await world.close()


# -- failure --------------------------------------------------------------------------------


class Load:
    """Readers that check every answer, and a writer, until stopped."""

    def __init__(self, world: World, keys: int = 40) -> None:
        self.world = world
        self.keys = [f"o-{i}" for i in range(keys)]
        self.committed: dict[str, int] = {}  # the version each key had at its last commit
        self.reads = 0
        self.failures: list[BaseException] = []
        self.progress = asyncio.Condition()
        self.stop = False

    async def fill(self) -> None:
        await self.world.commit(1, **{k: {"key": k, "version": 1} for k in self.keys})
        self.committed = dict.fromkeys(self.keys, 1)

    async def reader(self, seed: int) -> None:
        pick = random.Random(seed)
        while not self.stop:
            key = pick.choice(self.keys)
            known = self.committed[key]
            try:
                document = await self.world.views.get("orders", key)
                assert document is not None and document["key"] == key
                # Never older than a commit this process saw completed.
                assert document["version"] >= known, (key, document, known)
            except BaseException as exc:
                self.failures.append(exc)
                raise
            async with self.progress:
                self.reads += 1
                self.progress.notify_all()
            await asyncio.sleep(0)  # a read from SQLite may never suspend: let others run

    async def writer(self) -> None:
        checkpoint = 1
        pick = random.Random(0)
        while not self.stop:
            checkpoint += 1
            key = pick.choice(self.keys)
            await self.world.commit(checkpoint, **{key: {"key": key, "version": checkpoint}})
            self.committed[key] = checkpoint
            await asyncio.sleep(0)  # let readers run between commits

    async def until(self, condition: object, timeout: float = 60.0) -> None:
        """Wait (a deadline, not a measurement) until ``condition()`` holds."""
        assert callable(condition)
        async with asyncio.timeout(timeout), self.progress:
            await self.progress.wait_for(lambda: bool(condition()) or bool(self.failures))
        assert not self.failures, self.failures


async def test_reads_keep_answering_while_redis_dies_and_comes_back(
    request: pytest.FixtureRequest,
    kind: str,
    tmp_path: Path,
    own_redis: OwnRedis,
) -> None:
    settings = CacheSettings(
        namespace="kill", timeout=5, reset_after=0.05, failure_threshold=3, local_entries=16
    )
    world = await _world(request, kind, tmp_path, own_redis.url, settings)
    load = Load(world)
    tasks: list[asyncio.Task[None]] = []
    try:
        await load.fill()
        tasks = [asyncio.create_task(load.reader(seed)) for seed in range(6)]
        tasks.append(asyncio.create_task(load.writer()))
        metrics = world.views.metrics
        await load.until(lambda: metrics.hits + metrics.local_hits >= 50)

        own_redis.kill()
        reads = load.reads
        await load.until(
            lambda: (
                world.views.status().state is CacheState.DEGRADED
                and metrics.fallbacks >= 50
                and load.reads >= reads + 200
            )
        )
        assert world.invalidator.pending == 1  # the writer's invalidations wait

        own_redis.start()  # empty, on the same port
        hits = metrics.hits
        await load.until(lambda: metrics.hits >= hits + 50)
        await load.until(lambda: world.views.status().state is CacheState.UP)
    finally:
        load.stop = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await world.close()
    assert not load.failures, load.failures


async def test_reads_keep_answering_while_redis_hangs(
    request: pytest.FixtureRequest,
    kind: str,
    tmp_path: Path,
    own_redis: OwnRedis,
) -> None:
    # The cache may take 0.2 s; a stopped Redis takes for ever (until continued).
    settings = CacheSettings(namespace="slow", timeout=0.2, reset_after=60, failure_threshold=2)
    world = await _world(request, kind, tmp_path, own_redis.url, settings)
    try:
        await world.commit(1, **{"o-1": {"status": "open"}})
        assert await world.views.get("orders", "o-1") == {"status": "open"}
        own_redis.freeze()
        for _ in range(5):
            assert await world.views.get("orders", "o-1") == {"status": "open"}
        await world.commit(2, **{"o-1": {"status": "paid"}})  # its invalidation waits
        assert await world.views.get("orders", "o-1") == {"status": "paid"}
        # Two lookups failed (then the breaker stopped asking) and one invalidation.
        assert world.views.metrics.errors == 3
        assert world.views.metrics.fallbacks == 6
        assert world.views.status().state is CacheState.DEGRADED
        assert world.invalidator.status().state is CacheState.DEGRADED
    finally:
        own_redis.thaw()
        await world.close()
