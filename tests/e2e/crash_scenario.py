"""SIGKILL `twofold serve` under concurrent commands, restart it, retry, and check the outcome.

The scenario, shared by the SQLite and the PostgreSQL tests:

1. Serve the shop; create customers and products (each with an Idempotency-Key).
2. Several client threads POST orders, each with an Idempotency-Key of its own. After some
   orders were acknowledged, the whole server (every worker) is killed with SIGKILL: some
   requests were answered, some were cut off without an answer.
3. Serve again on the same stores; retry every request that got no answer with the same key
   and body, and repeat a sample of answered ones. Kill and restart a few times.
4. Check: every retried request that had been answered gets its first answer back (same id,
   version and position); every key ends with exactly one order; each customer's statistics
   count exactly the orders its list shows; and, after the server stops, the live views
   equal, document for document, the views rebuilt from the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.processes import STARTUP_DEADLINE, free_port
from twofold import App, Settings, bootstrap
from twofold.examples import shop

CUSTOMERS = [f"c{n}" for n in range(4)]
PRODUCTS = [f"p{n}" for n in range(3)]
CLIENTS = 8
DEADLINE = 120.0  # seconds; for a broken run to fail rather than hang, not a speed bound


@dataclasses.dataclass
class Request:
    key: str
    body: dict[str, Any]
    answer: dict[str, Any] | None = None  # the first answer the client received


@dataclasses.dataclass
class Figures:
    requests: int = 0
    kills: int = 0
    cut_off: int = 0
    replayed_checked: int = 0


def session_members(session: int) -> list[int]:
    """Every process whose session id is ``session`` (the server and all its workers)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session:  # state, ppid, pgrp, session, ...
            members.append(int(entry.name))
    return members


@contextmanager
def server(workers: int, *, cwd: Path, env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """`twofold serve --workers N` in a session of its own, so one SIGKILL reaches every
    worker process. Yields the base URL and a function that kills the whole group."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "twofold.cli.main", "serve", "--port", str(port)]
        + (["--workers", str(workers)] if workers > 1 else []),
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def kill() -> None:
        # Worker processes sit in process groups of their own: kill the whole session.
        for pid in session_members(process.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()

    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            if process.poll() is not None:
                log = process.stderr.read() if process.stderr else ""
                raise AssertionError(f"twofold serve exited {process.returncode}:\n{log}")
            try:
                if httpx.get(f"{url}/health").status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "twofold serve did not start"
            time.sleep(0.05)
        yield url, kill
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Any process of the session left behind (a worker whose parent was killed) goes too.
        for pid in session_members(process.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.stderr is not None:
            process.stderr.close()


def send(client: httpx.Client, path: str, request: Request) -> dict[str, Any]:
    response = client.post(path, json=request.body, headers={"Idempotency-Key": request.key})
    assert response.status_code == 201, f"{request.key}: {response.status_code} {response.text}"
    body: dict[str, Any] = response.json()
    return body


def seed(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for customer in CUSTOMERS:
            body = {"user_id": customer, "email": f"{customer}@x.example", "name": customer}
            send(client, "/api/users", Request(f"user-{customer}", body))
        for product in PRODUCTS:
            body = {"product_id": product, "name": product, "price": "2.50"}
            send(client, "/api/products", Request(f"product-{product}", body))


def order_request(n: int) -> Request:
    body = {
        "customer_id": CUSTOMERS[n % len(CUSTOMERS)],
        "items": [{"product_id": PRODUCTS[n % len(PRODUCTS)], "quantity": 1 + n % 3,
                   "price": "2.50"}],
    }  # fmt: skip
    return Request(f"order-{uuid.uuid4().hex}", body)


def load_until_killed(url: str, kill: Any, requests: list[Request], acknowledged: int) -> None:
    """Client threads post new orders; once ``acknowledged`` were answered, SIGKILL."""
    lock = threading.Lock()
    answered = threading.Event()
    count = [0]
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                with lock:
                    request = order_request(len(requests))
                    requests.append(request)
                try:
                    response = client.post(
                        "/api/orders", json=request.body, headers={"Idempotency-Key": request.key}
                    )
                except httpx.TransportError:
                    return  # cut off by the kill: no answer
                assert response.status_code == 201, response.text
                request.answer = response.json()
                with lock:
                    count[0] += 1
                    if count[0] >= acknowledged:
                        answered.set()

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        assert answered.wait(DEADLINE), f"only {count[0]} orders were answered"
    finally:
        kill()
        stop.set()
        for thread in threads:
            thread.join(DEADLINE)


def retry(url: str, requests: list[Request], figures: Figures) -> None:
    """Every request left without an answer is sent again with its key; a sample of the
    answered ones too, which must get their first answer back."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for n, request in enumerate(requests):
            if request.answer is None:
                figures.cut_off += 1
                request.answer = send(client, "/api/orders", request)
            elif n % 3 == 0:
                again = send(client, "/api/orders", request)
                assert again == request.answer, (request.key, request.answer, again)
                figures.replayed_checked += 1


def check_views(url: str, requests: list[Request]) -> None:
    """Each key has exactly one order; statistics count exactly what the lists show."""
    answers = [r.answer for r in requests]
    assert all(a is not None for a in answers)
    ids = [a["id"] for a in answers if a is not None]
    assert len(set(ids)) == len(ids), "two keys were answered with one order"
    newest = max(a["position"] for a in answers if a is not None)
    expected: dict[str, set[str]] = {c: set() for c in CUSTOMERS}
    for request in requests:
        assert request.answer is not None
        expected[request.body["customer_id"]].add(request.answer["id"])
    with httpx.Client(base_url=url, timeout=60) as client:
        for customer, orders in expected.items():
            params: dict[str, Any] = {"min_position": newest, "timeout_ms": 30000}
            stats = client.get(f"/api/customers/{customer}/statistics", params=params)
            assert stats.status_code == 200, stats.text
            listed: set[str] = set()
            page = 1
            while True:
                response = client.get(
                    "/api/orders",
                    params={**params, "customer_id": customer, "size": 100, "page": page},
                )
                assert response.status_code == 200, response.text
                body = response.json()
                listed |= {item["order_id"] for item in body["items"]}
                if page * 100 >= body["total"]:
                    break
                page += 1
            assert listed == orders, f"{customer}: orders listed differ from those answered"
            assert stats.json()["total_orders"] == len(orders), (customer, stats.json())


async def snapshot(app: App) -> dict[str, list[dict[str, Any]]]:
    views: dict[str, list[dict[str, Any]]] = {}
    for projection in shop.PROJECTIONS:
        for collection in projection.collections:
            views[collection.name] = await app.read_store.find(
                collection.name, order_by=[("key", "asc")]
            )
    return views


async def live_equals_rebuilt(settings: Settings) -> None:
    async with await bootstrap(shop.SERVICE, settings) as app:
        await app.wait_for_projections(timeout=DEADLINE)
        live = await snapshot(app)
        for name in app.runners:
            await app.rebuild(name)
        assert await snapshot(app) == live


def run(
    *, workers: int, cwd: Path, env: dict[str, str], settings: Settings, kills: int = 3
) -> Figures:
    """The whole scenario; returns what happened, for the test to print."""
    figures = Figures()
    requests: list[Request] = []
    with server(workers, cwd=cwd, env=env) as (url, kill):
        seed(url)
        load_until_killed(url, kill, requests, acknowledged=20)
        figures.kills += 1
    for round_ in range(1, kills):
        with server(workers, cwd=cwd, env=env) as (url, kill):
            retry(url, requests, figures)
            load_until_killed(url, kill, requests, acknowledged=20 + 10 * round_)
            figures.kills += 1
    with server(workers, cwd=cwd, env=env) as (url, _):
        retry(url, requests, figures)
        check_views(url, requests)
    figures.requests = len(requests)
    asyncio.run(live_equals_rebuilt(settings))
    print(
        f"\ncrash scenario ({workers} worker(s)): {figures.requests} orders, "
        f"{figures.kills} kills, {figures.cut_off} cut off and retried, "
        f"{figures.replayed_checked} answered ones repeated: all first answers, "
        "stored once, views equal a rebuild"
    )
    return figures
