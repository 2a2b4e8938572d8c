"""TWOFOLD_CACHE as bootstrap wires it: the App's queries read through the cache, its
runners invalidate it, a rebuild's switch abandons the old copy, and health reports it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from tests.e2e.notes_api import NOTES, GetNote, WriteNote
from twofold import App, Settings, bootstrap
from twofold.http.health import check_health


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db", f"sqlite:///{tmp_path}/views.db"
    url = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("pg_schema")
    joined = f"{url}{'&' if '?' in url else '?'}schema={schema}"
    return joined, joined


@pytest.fixture(params=[0, 100], ids=["redis", "redis+local"])
async def app(
    request: pytest.FixtureRequest, stores: tuple[str, str], redis_url: str, namespace: str
) -> AsyncIterator[App]:
    events, views = stores
    settings = Settings(
        event_store=events,
        read_store=views,
        cache=f"{redis_url}?namespace={namespace}&timeout=5",
        cache_local=request.param,
    )
    built = await bootstrap(NOTES, settings)
    async with built:
        yield built


def remove_views(folder: Path) -> None:
    for leftover in folder.glob("views.db*"):
        leftover.unlink()


async def note(app: App, note_id: str, *, min_position: int | None = None) -> dict[str, object]:
    answer = await app.ask(GetNote(note_id=note_id), min_position=min_position)
    assert answer is not None
    return {"text": answer.text, "writes": answer.writes, "edition": answer.edition}


async def recorded(app: App) -> dict[str, float]:
    """The cache's Prometheus counters, as ``/metrics`` would show them."""
    return {
        sample.name: sample.value
        for family in await app.metrics.snapshot()
        if family.name.startswith("twofold_cache_")
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def test_queries_read_through_the_cache_and_see_every_write(app: App) -> None:
    assert app.cache is not None
    before = await recorded(app)
    first = await app.dispatch(WriteNote(note_id="n1", text="a"))
    assert await note(app, "n1", min_position=first.position) == {
        "text": "a",
        "writes": 1,
        "edition": "1",
    }
    for _ in range(3):
        assert (await note(app, "n1"))["text"] == "a"
    counters = app.cache.metrics
    assert counters.hits + counters.local_hits >= 2, counters
    for n in range(2, 6):
        written = await app.dispatch(WriteNote(note_id="n1", text=f"v{n}"))
        seen = await note(app, "n1", min_position=written.position)
        assert seen == {"text": f"v{n}", "writes": n, "edition": "1"}
        assert await note(app, "n1") == seen  # cached now, and still the newest
    assert counters.invalidations >= 5
    assert counters.fallbacks == 0 and counters.errors == 0
    after = await recorded(app)
    for name, count in counters.as_dict().items():
        key = f"twofold_cache_{name}_total"
        assert after[key] - before.get(key, 0.0) == count, (name, after, before)


async def test_a_rebuild_switch_never_serves_the_old_copy(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = 0
    for n in range(5):
        last = (await app.dispatch(WriteNote(note_id=f"n{n}", text="t"))).position
    for n in range(5):
        assert (await note(app, f"n{n}", min_position=last))["edition"] == "1"
        assert (await note(app, f"n{n}"))["edition"] == "1"  # served by the cache
    monkeypatch.setenv("NOTES_EDITION", "2")
    await app.rebuild("notes")
    for n in range(5):
        assert (await note(app, f"n{n}"))["edition"] == "2"
    written = await app.dispatch(WriteNote(note_id="n0", text="after"))
    assert await note(app, "n0", min_position=written.position) == {
        "text": "after",
        "writes": 2,
        "edition": "2",
    }


async def test_health_shows_the_cache_up_with_its_counters(app: App) -> None:
    written = await app.dispatch(WriteNote(note_id="n1", text="a"))
    await note(app, "n1", min_position=written.position)
    health = await check_health(app, threshold=60, runs_projections=True)
    assert health.status == "UP"
    assert health.cache is not None and health.cache.status == "UP"
    assert health.cache.counters["loads"] >= 1


async def test_a_store_made_anew_is_not_answered_from_the_old_store_s_entries(
    tmp_path: Path, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Views deleted and rebuilt from scratch restart at generation 1 and checkpoint 0,
    below what the cache remembers: the runner's start abandons the old entries."""
    settings = Settings(
        event_store=f"sqlite:///{tmp_path}/events.db",
        read_store=f"sqlite:///{tmp_path}/views.db",
        cache=f"{redis_url}?namespace={namespace}",
    )
    async with await bootstrap(NOTES, settings) as app:
        await app.rebuild("notes")  # generation 2 in the cache's meta
        written = await app.dispatch(WriteNote(note_id="n1", text="a"))
        assert (await note(app, "n1", min_position=written.position))["edition"] == "1"
        await note(app, "n1")
    remove_views(tmp_path)
    monkeypatch.setenv("NOTES_EDITION", "2")
    async with await bootstrap(NOTES, settings) as app:
        await app.wait_for_projections()
        assert (await note(app, "n1"))["edition"] == "2"
    with redis.Redis.from_url(redis_url) as client:
        assert client.hget(f"{{{namespace}:notes}}:meta", "gen") == b"1"
