"""The relay as a user runs it: `twofold relay`, `twofold serve` with TWOFOLD_RELAY=run, and
`twofold worker --source`, each a real process, against brokers the tests start.

Every wait is on progress (a lock file naming its holder, a checkpoint, /health), with a
deadline that only bounds a broken run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats

from tests.e2e.processes import environment, serving, twofold
from tests.e2e.shop_client import ok, order, product, user
from tests.integration.brokers.servers import NatsServer, RedisServer, TansuServer
from tests.unit.relay.ledger import Deposited, Ledger
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.adapters.sqlite.relay_lease import relay_lock_path
from twofold.application.ports import EventStore
from twofold.application.relay.remote import BusProjectionRunner
from twofold.bootstrap import bootstrap_bus_worker, open_publisher, open_source
from twofold.codec import Codec
from twofold.examples.shop import SERVICE
from twofold.examples.shop.queries import GetOrder
from twofold.records import ANY
from twofold.settings import Settings

DEADLINE = 120.0  # seconds; bounds a broken run, no figure depends on it
ACCOUNTS = 10


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (a lock file, a checkpoint: nothing to be woken by) with a deadline."""
    deadline = time.monotonic() + DEADLINE
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def holder(lock: Path) -> int | None:
    """The pid written in a relay's lock file by the process that holds it."""
    try:
        text = lock.read_text()
    except FileNotFoundError:
        return None
    return int(text.split()[0]) if text.strip() else None


async def write(events: EventStore, codec: Codec, first: int, count: int) -> int:
    position = 0
    for n in range(first, first + count):
        account = f"acct-{n % ACCOUNTS}"
        event = codec.new_event(Deposited(account=account, amount=1))
        position = (await events.append(account, [event], expected_version=ANY)).position
    return position


async def test_a_standby_relay_takes_over_when_the_active_one_is_killed(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    destination = open_publisher(nats_server.url).destination
    lock = relay_lock_path(str(tmp_path / "events.db"), destination)
    events = await SQLiteEventStore.open(tmp_path / "events.db")
    try:
        await standby_takes_over(
            tmp_path, nats_server, "sqlite:///events.db", events, lambda: holder(lock)
        )
    finally:
        await events.close()


async def standby_takes_over(
    tmp_path: Path,
    nats_server: NatsServer,
    event_store_url: str,
    events: EventStore,
    lease_holder: Callable[[], int | None],
) -> None:
    """Two `twofold relay` processes; the one holding the lease (``lease_holder``: its pid)
    is killed with SIGKILL mid-stream; the other takes over. At the consumer: every event
    once, in order, and JetStream holds each once."""
    env = environment(TWOFOLD_EVENT_STORE=event_store_url, TWOFOLD_BUS=nats_server.url)
    codec = Codec([Deposited])
    views = await SQLiteReadStore.open(tmp_path / "views.db")
    source = open_source(nats_server.url, group="ledger")
    worker = BusProjectionRunner(
        Ledger(), source=source, read_store=views, codec=codec, receive_timeout=0.2
    )
    worker_task = asyncio.create_task(worker.run())
    try:
        with processes() as relays:
            for _ in range(2):
                relays.append(twofold("relay", "--retry-interval", "0.1", cwd=tmp_path, env=env))
            pids = {p.pid: p for p in relays}

            async def held() -> bool:
                return lease_holder() in pids

            await until(held, "a relay holds the lease")
            first = lease_holder()
            assert first is not None
            position = await write(events, codec, 0, 300)
            await worker.positions.wait([worker.name], position // 2, DEADLINE)
            pids[first].send_signal(signal.SIGKILL)  # mid-stream, perhaps mid-batch
            pids[first].wait()

            async def taken_over() -> bool:
                return lease_holder() not in (None, first)

            await until(taken_over, "the standby relay takes the lease")
            position = await write(events, codec, 300, 300)
            await worker.positions.wait([worker.name], position, DEADLINE)
            standby = pids[lease_holder() or 0]
            assert standby.poll() is None
    finally:
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        await source.close()
    try:
        # Nothing lost, nothing applied twice, each account in order...
        for n in range(ACCOUNTS):
            view = await views.get("ledger_accounts", f"acct-{n}")
            assert view == {"balance": 60, "versions": list(range(1, 61))}
        assert worker.applied == 600
        # ...and nothing duplicated at the consumer: JetStream dropped what the standby
        # published again (Nats-Msg-Id is the event id), so the stream holds each once.
        client = await nats.connect(nats_server.url)
        try:
            info = await client.jetstream().stream_info("TWOFOLD")
            assert info.state.messages == 600
        finally:
            await client.close()
        assert worker.duplicates == 0
    finally:
        await views.close()


async def remote_views_reach(path: Path, position: int) -> None:
    """Wait until every projection of the remote worker's store committed ``position``."""
    views = await SQLiteReadStore.open(path)
    try:

        async def reached() -> bool:
            states = await views.states()
            return bool(states) and all(s.checkpoint >= position for s in states)

        await until(reached, f"the remote worker applies position {position}")
    finally:
        await views.close()


async def shop_to_remote_worker(tmp_path: Path, bus: str, *, relay_in_serve: bool) -> None:
    """Write service (serve), relay, broker, read service (worker --source): the shop's
    answers from the remote views equal the write service's own."""
    write_env = environment(
        TWOFOLD_EVENT_STORE="sqlite:///events.db",
        TWOFOLD_READ_STORE="sqlite:///views.db",
        TWOFOLD_BUS=bus,
        TWOFOLD_RELAY="run" if relay_in_serve else "off",
    )
    read_env = environment(TWOFOLD_READ_STORE="sqlite:///remote-views.db")
    with processes() as started, serving([], cwd=tmp_path, env=write_env) as (url, _):
        if not relay_in_serve:
            started.append(twofold("relay", cwd=tmp_path, env=write_env))
        started.append(twofold("worker", "--source", bus, cwd=tmp_path, env=read_env))
        with httpx.Client(base_url=url) as client:
            user(client)
            product(client)
            position = 0
            for n in range(20):
                position = order(client, order_id=f"o{n}")["position"]
            await remote_views_reach(tmp_path / "remote-views.db", position)
            health = ok(await asyncio.to_thread(client.get, "/health"))
            [relay] = health["relays"]
            assert relay["destination"] == open_publisher(bus).destination
            if relay_in_serve:  # this process runs it: its breaker shows
                assert (relay["active"], relay["breaker"]) == (True, "closed")
            # Read-your-writes in the read service: min_position waits on its checkpoint.
            settings = Settings(read_store=f"sqlite:///{tmp_path / 'remote-views.db'}")
            remote = await bootstrap_bus_worker(SERVICE, settings, source=bus)
            try:
                await remote.start()
                for n in range(20):
                    query, route = GetOrder(order_id=f"o{n}"), f"/api/orders/o{n}"
                    answer = await remote.queries.ask_json(
                        query, min_position=position, timeout=DEADLINE
                    )
                    assert answer is not None
                    served = await asyncio.to_thread(client.get, route)
                    assert json.loads(answer) == ok(served)
            finally:
                await remote.close()
        for process in started:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""


async def test_serve_relay_and_a_remote_worker_over_nats(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    await shop_to_remote_worker(tmp_path, nats_server.url, relay_in_serve=False)


async def test_serve_running_the_relay_and_a_remote_worker_over_redis_streams(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    await shop_to_remote_worker(tmp_path, redis_server.url, relay_in_serve=True)


async def health_until(
    client: httpx.Client, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """/health once ``check`` holds for it (polled with a deadline, as a monitor would)."""
    found: dict[str, Any] = {}

    async def holds() -> bool:
        nonlocal found
        found = (await asyncio.to_thread(client.get, "/health")).json()
        return check(found)

    await until(holds, f"{what} (last /health: {found})")
    return found


async def test_health_is_degraded_while_the_broker_is_down_and_commands_are_still_accepted(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = environment(TWOFOLD_BUS=nats_server.url, TWOFOLD_RELAY="run")
    with serving([], cwd=tmp_path, env=env) as (url, _), httpx.Client(base_url=url) as client:
        user(client)

        def caught_up(health: dict[str, Any]) -> bool:
            [relay] = health["relays"]
            return bool(health["status"] == "UP" and relay["lag_events"] == 0 and relay["active"])

        await health_until(client, caught_up, "the relay catches up")
        nats_server.stop(signal.SIGKILL)
        product(client)  # the log is the queue: commands need no broker

        def degraded(health: dict[str, Any]) -> bool:
            [relay] = health["relays"]
            return bool(health["status"] == "DEGRADED" and relay["breaker"] == "open")

        down = await health_until(client, degraded, "the breaker opens")
        [relay] = down["relays"]
        assert relay["state"] == "retrying" and relay["lag_events"] >= 1
        assert relay["lag_seconds"] > 0 and relay["error"]
        nats_server.start()
        await health_until(client, caught_up, "the relay catches up after the outage")


async def test_a_kafka_worker_of_the_group_goes_on_where_a_killed_one_stopped(
    tmp_path: Path, tansu_server: TansuServer
) -> None:
    """`twofold worker --source kafka://…` applies the shop from the broker; it is killed
    with SIGKILL; another worker of the same group goes on from the offsets the first one
    committed, and the read service answers exactly as the write service does.

    One partition: the shop's projections look up other streams' views (an order shows
    its customer's name), so they need the log's order across streams, which a topic keeps
    only within a partition (docs/relay.md, "Sharing the work")."""
    bus = f"{tansu_server.url}?idempotence=false&partitions=1"
    write_env = environment(TWOFOLD_BUS=bus, TWOFOLD_RELAY="run")
    read_env = environment(TWOFOLD_READ_STORE="sqlite:///remote-views.db")
    worker = ["worker", "--source", bus, "--group", "reads"]
    with processes() as workers, serving([], cwd=tmp_path, env=write_env) as (url, _):
        workers.append(twofold(*worker, cwd=tmp_path, env=read_env))
        with httpx.Client(base_url=url) as client:
            user(client)
            product(client)
            position = 0
            for n in range(10):
                position = order(client, order_id=f"o{n}")["position"]
            await remote_views_reach(tmp_path / "remote-views.db", position)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            workers.append(twofold(*worker, cwd=tmp_path, env=read_env))
            for n in range(10, 30):
                position = order(client, order_id=f"o{n}")["position"]
            await remote_views_reach(tmp_path / "remote-views.db", position)
            settings = Settings(read_store=f"sqlite:///{tmp_path / 'remote-views.db'}")
            remote = await bootstrap_bus_worker(SERVICE, settings, source=bus)
            try:
                await remote.start()
                for n in range(30):
                    route = f"/api/orders/o{n}"
                    answer = await remote.queries.ask_json(
                        GetOrder(order_id=f"o{n}"), min_position=position, timeout=DEADLINE
                    )
                    served = await asyncio.to_thread(client.get, route)
                    assert answer is not None and json.loads(answer) == ok(served)
            finally:
                await remote.close()
        assert workers[1].poll() is None, workers[1].stdout.read() if workers[1].stdout else ""
