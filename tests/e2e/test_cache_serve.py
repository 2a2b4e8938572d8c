"""`twofold serve --workers 2` with TWOFOLD_CACHE: clients read their writes through the
cache in whichever worker answers, a rebuild's switch never serves the old copy, and a
Redis killed under load costs no answer (the cache shows DEGRADED, never DOWN)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.notes_api import NOTES
from tests.e2e.processes import environment, serving, twofold
from tests.e2e.shop_client import ok
from tests.e2e.test_workers import DEADLINE, pinned_clients
from tests.integration.postgres.conftest import pg_schema, postgres_url
from tests.integration.redis.conftest import OwnRedis, namespace, own_redis, redis_url
from twofold import Settings, bootstrap

__all__ = ["namespace", "own_redis", "pg_schema", "postgres_url", "redis_url"]

APP = "tests.e2e.notes_api:api"


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {
            "TWOFOLD_EVENT_STORE": f"sqlite:///{tmp_path}/events.db",
            "TWOFOLD_READ_STORE": f"sqlite:///{tmp_path}/views.db",
        }
    url = request.getfixturevalue("postgres_url")
    joined = f"{url}{'&' if '?' in url else '?'}schema={request.getfixturevalue('pg_schema')}"
    return {"TWOFOLD_EVENT_STORE": joined, "TWOFOLD_READ_STORE": joined}


def put(client: httpx.Client, note_id: str, text: str) -> int:
    response = client.put(f"/notes/{note_id}", json={"text": text})
    assert response.status_code == 200, response.text
    position: int = response.json()["position"]
    return position


def get(client: httpx.Client, note_id: str, min_position: int | None = None) -> dict[str, Any]:
    params = {} if min_position is None else {"min_position": min_position}
    return ok(client.get(f"/notes/{note_id}", params=params))


def health(client: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/health").json()
    return body


@pytest.fixture(params=["0", "1000"], ids=["redis", "redis+local"])
def workers(
    request: pytest.FixtureRequest,
    stores: dict[str, str],
    redis_url: str,
    namespace: str,
    tmp_path: Path,
) -> Iterator[dict[int, httpx.Client]]:
    env = environment(
        **stores,
        TWOFOLD_CACHE=f"{redis_url}?namespace={namespace}",
        TWOFOLD_CACHE_LOCAL=request.param,
    )
    with ExitStack() as stack:
        url, _ = stack.enter_context(serving([APP, "--workers", "2"], cwd=tmp_path, env=env))
        yield pinned_clients(url, stack)


@pytest.mark.slow
def test_both_workers_read_their_writes_through_the_cache(
    workers: dict[int, httpx.Client],
) -> None:
    a, b = workers.values()
    for n in range(1, 11):
        writer, reader = (a, b) if n % 2 else (b, a)
        position = put(writer, "n1", f"v{n}")
        for client in (reader, writer, reader):
            assert get(client, "n1", position) == {
                "note_id": "n1",
                "text": f"v{n}",
                "writes": n,
                "edition": "1",
            }
    counters = [health(c)["cache"] for c in (a, b)]
    assert all(c["status"] == "UP" for c in counters), counters
    served = sum(c["counters"]["hits"] + c["counters"]["local_hits"] for c in counters)
    assert served > 0, counters
    assert sum(c["counters"]["invalidations"] for c in counters) >= 10, counters


async def rebuild_elsewhere(env: dict[str, str], namespace: str, redis_url: str) -> int:
    """Rebuild the notes in this process (as an operator's command would), sharing the
    server's stores and cache; projections run in the server, not here."""
    settings = Settings(
        event_store=env["TWOFOLD_EVENT_STORE"],
        read_store=env["TWOFOLD_READ_STORE"],
        cache=f"{redis_url}?namespace={namespace}",
        projections="off",
    )
    async with await bootstrap(NOTES, settings) as app:
        return await app.rebuild("notes")


@pytest.mark.slow
@pytest.mark.parametrize("local", ["0", "1000"], ids=["redis", "redis+local"])
def test_a_rebuild_switch_never_serves_the_old_copy(
    local: str,
    stores: dict[str, str],
    redis_url: str,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = environment(
        **stores, TWOFOLD_CACHE=f"{redis_url}?namespace={namespace}", TWOFOLD_CACHE_LOCAL=local
    )
    with ExitStack() as stack:
        url, _ = stack.enter_context(serving([APP, "--workers", "2"], cwd=tmp_path, env=env))
        a, b = pinned_clients(url, stack).values()
        last = 0
        for n in range(6):
            last = put(a if n % 2 else b, f"n{n}", "text")
        for client in (a, b, a, b):
            for n in range(6):
                assert get(client, f"n{n}", last)["edition"] == "1"
        counters = [health(c)["cache"]["counters"] for c in (a, b)]
        hits = sum(c["hits"] + c["local_hits"] for c in counters)
        assert hits > 0, "the first edition was served by the cache"

        monkeypatch.setenv("NOTES_EDITION", "2")
        assert asyncio.run(rebuild_elsewhere(stores, namespace, redis_url)) == last
        for client in (a, b):
            for n in range(6):
                assert get(client, f"n{n}")["edition"] == "2"
                assert get(client, f"n{n}", last)["edition"] == "2"
        written = put(a, "n0", "after")
        assert get(b, "n0", written)["text"] == "after"
        assert get(b, "n0", written)["writes"] == 2


class Load:
    """Clients that read (and write) notes in threads until stopped, checking each answer
    against the newest write they know of; every failure is kept."""

    def __init__(self, url: str, notes: int) -> None:
        self.url = url
        self.notes = notes
        self.answered = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read, args=(i,)) for i in range(4)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(DEADLINE)

    def wait_for(self, answered: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while self.answered < answered and not self.failures:
            assert time.monotonic() < deadline, f"only {self.answered} answers"
            time.sleep(0.01)  # watching a counter other threads move, with a deadline

    def _read(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            written = 0
            n = 0
            while not self.stop.is_set():
                note = f"n{(index + n) % self.notes}"
                n += 1
                try:
                    if n % 10 == 0:
                        position = put(client, f"w{index}", f"t{n}")
                        body = get(client, f"w{index}", position)
                        written = n
                        if body["text"] != f"t{written}":
                            raise AssertionError(f"read {body} after writing t{written}")
                    else:
                        body = get(client, note)
                        if body["note_id"] != note:
                            raise AssertionError(f"asked for {note}, got {body}")
                except Exception as error:
                    with self._lock:
                        self.failures.append(f"{type(error).__name__}: {error}")
                    return
                with self._lock:
                    self.answered += 1


@pytest.mark.slow
def test_queries_keep_answering_when_redis_is_killed_under_load(
    own_redis: OwnRedis, tmp_path: Path
) -> None:
    env = environment(
        TWOFOLD_EVENT_STORE=f"sqlite:///{tmp_path}/events.db",
        TWOFOLD_READ_STORE=f"sqlite:///{tmp_path}/views.db",
        TWOFOLD_CACHE=f"{own_redis.url}?timeout=0.5&reset_after=0.2",
        TWOFOLD_CACHE_LOCAL="100",
    )
    with ExitStack() as stack:
        url, _ = stack.enter_context(serving([APP, "--workers", "2"], cwd=tmp_path, env=env))
        clients = pinned_clients(url, stack)
        last = 0
        for n in range(8):
            last = put(clients[min(clients)], f"n{n}", "text")
        for client in clients.values():
            for n in range(8):
                get(client, f"n{n}", last)
        with Load(url, notes=8) as load:
            load.wait_for(200)
            own_redis.kill()
            seen = load.answered
            load.wait_for(seen + 400)
            assert not load.failures, load.failures[:3]
            for client in clients.values():
                for n in range(8):  # a few reads in each worker: its breaker opens
                    get(client, f"n{n}")
                report = health(client)
                assert report["status"] != "DOWN", report
                assert report["cache"]["status"] == "DEGRADED", report["cache"]
                assert report["cache"]["counters"]["fallbacks"] > 0, report["cache"]
            own_redis.start()
            seen = load.answered
            load.wait_for(seen + 200)
            assert not load.failures, load.failures[:3]
        for client in clients.values():
            deadline = time.monotonic() + DEADLINE
            while health(client)["cache"]["status"] != "UP":
                assert time.monotonic() < deadline, health(client)
                for n in range(8):  # reads let the breaker's trial through
                    get(client, f"n{n}")
        position = put(clients[max(clients)], "n0", "back")
        for client in clients.values():
            assert get(client, "n0", position)["text"] == "back"


def test_serve_refuses_bad_cache_settings_naming_each_problem(tmp_path: Path) -> None:
    env = environment(
        TWOFOLD_CACHE="redis://127.0.0.1:6379/0?ttl=5&colour=blue",
        TWOFOLD_CACHE_TTL="30",
        TWOFOLD_CACHE_LOCAL="100",
    )
    process = twofold("serve", "--port", "0", cwd=tmp_path, env=env)
    output, _ = process.communicate(timeout=DEADLINE)
    assert process.returncode == 2, output
    lines = output.strip().splitlines()
    assert lines == [
        "twofold serve: TWOFOLD_CACHE sets ttl and TWOFOLD_CACHE_TTL sets it too; say it once",
        "twofold serve: TWOFOLD_CACHE option 'colour' is not understood; twofold's options: "
        "failure_threshold, lists, local_entries, namespace, not_found_ttl, reset_after, "
        "timeout, tombstone_ttl, ttl",
    ]
    assert not list(tmp_path.iterdir()), "nothing is created"
