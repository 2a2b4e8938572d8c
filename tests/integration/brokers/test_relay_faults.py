"""Proved under faults: SIGKILL the relay and stop the broker while events are written.

A writer appends deposits to many accounts; a `twofold relay` process publishes them to a
broker of the test's own; a worker (BusProjectionRunner) applies them from the broker into
its own SQLite views. Meanwhile the relay is killed with SIGKILL and restarted several times, and
the broker is stopped and started again. At the end, every event is applied exactly once,
each account's versions in order, and the views equal a rebuild from the event store.

Every wait is on progress (positions written, the worker's checkpoint), with a deadline
that only bounds a broken run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.e2e.processes import REPO
from tests.integration.brokers.servers import (
    BrokerProcess,
    NatsServer,
    RedisServer,
    TansuServer,
    redis_binary,
    running,
)
from tests.unit.relay.ledger import Deposited, Ledger
from twofold.adapters.kafka.source import open_kafka_source
from twofold.adapters.nats.source import open_nats_source
from twofold.adapters.redis_streams.source import open_redis_source
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.relay.remote import BusProjectionRunner
from twofold.application.relay.source import BusSource
from twofold.application.runner import ProjectionRunner
from twofold.codec import Codec
from twofold.records import ANY

DEADLINE = 300.0  # seconds; bounds a broken run, no figure depends on it
ACCOUNTS = 40
EVENTS = 3000
KILLS = 4
OUTAGES = 2

pytestmark = pytest.mark.slow


class RelayProcess:
    """`twofold relay`, as a user runs it, relaying the SQLite event store to ``url``."""

    def __init__(self, events_db: Path, url: str, log: Path) -> None:
        self.args = [sys.executable, "-m", "twofold.cli.main", "relay", "--retry-interval", "0.1"]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TWOFOLD_")},
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "TWOFOLD_EVENT_STORE": f"sqlite:///{events_db}",
            "TWOFOLD_BUS": url,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Written:
    """Positions the writer appended, and a way to wait for the next ones."""

    def __init__(self) -> None:
        self.positions: list[int] = []
        self._more = asyncio.Event()

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> int:
        return self.positions[index]

    def append(self, position: int) -> None:
        self.positions.append(position)
        self._more.set()

    async def reach(self, count: int) -> None:
        while len(self.positions) < min(count, EVENTS):
            self._more.clear()
            await asyncio.wait_for(self._more.wait(), DEADLINE)


async def writer(events: SQLiteEventStore, codec: Codec, written: Written) -> None:
    for n in range(EVENTS):
        account = f"acct-{n % ACCOUNTS}"
        event = codec.new_event(Deposited(account=account, amount=n % 7 + 1))
        result = await events.append(account, [event], expected_version=ANY)
        written.append(result.position)


async def progress(worker: BusProjectionRunner, written: Written, more: int) -> None:
    """Wait until the writer wrote ``more`` events from now and the worker applied them."""
    target = len(written) + more
    await written.reach(target)
    await worker.positions.wait([worker.name], written[min(target, EVENTS) - 1], DEADLINE)


async def applied_all(worker: BusProjectionRunner) -> None:
    for _ in range(int(DEADLINE / 0.05)):
        if worker.applied >= EVENTS or worker.stopped:
            return
        await asyncio.sleep(0.05)  # polled with a deadline: the runner has no event for it


async def run_faults(
    tmp_path: Path,
    broker: BrokerProcess,
    source: BusSource,
    relay_url: str,
    figures: list[str],
    *,
    planned_outages: int = OUTAGES,
) -> None:
    codec = Codec([Deposited])
    events = await SQLiteEventStore.open(tmp_path / "events.db", poll_interval=0.05)
    views = await SQLiteReadStore.open(tmp_path / "views.db")
    rebuilt = await SQLiteReadStore.open(tmp_path / "rebuilt.db")
    relay = RelayProcess(tmp_path / "events.db", relay_url, tmp_path / "relay.log")
    worker = BusProjectionRunner(
        Ledger(), source=source, read_store=views, codec=codec, receive_timeout=0.2
    )
    written = Written()
    kills = outages = 0
    relay.start()
    worker_task = asyncio.create_task(worker.run())
    writer_task = asyncio.create_task(writer(events, codec, written))
    try:
        step = EVENTS // (KILLS + planned_outages + 2)
        for round_ in range(KILLS + planned_outages):
            await progress(worker, written, step)
            if round_ % 3 == 2 and outages < planned_outages:
                broker.stop(signal.SIGKILL)
                outages += 1
                await written.reach(len(written) + step // 2)  # writes go on meanwhile
                broker.start()
            else:
                relay.kill()
                kills += 1
                relay.start()
        await asyncio.wait_for(writer_task, DEADLINE)
        assert relay.alive(), (tmp_path / "relay.log").read_text()
        await worker.positions.wait([worker.name], written[-1], DEADLINE)
        # From a partitioned topic the checkpoint (the highest position applied) may come
        # before the other partitions' events: wait until every event was applied.
        await applied_all(worker)
    finally:
        writer_task.cancel()
        worker_task.cancel()
        for task in (writer_task, worker_task):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if relay.alive():
            relay.kill()
        await source.close()

    # The reference: the same projection rebuilt from the event store.
    reference = ProjectionRunner(Ledger(), event_store=events, read_store=rebuilt, codec=codec)
    await reference.catch_up()
    log = await events.read_all(limit=EVENTS + 1)
    try:
        lost = twice = out_of_order = 0
        for n in range(ACCOUNTS):
            account = f"acct-{n}"
            view = await views.get("ledger_accounts", account) or {"versions": []}
            expected = [r.stream_version for r in log if r.stream_id == account]
            versions = view["versions"]
            lost += len(set(expected) - set(versions))
            twice += len(versions) - len(set(versions))
            out_of_order += sum(1 for a, b in itertools.pairwise(versions) if b < a)
            assert view == await rebuilt.get("ledger_accounts", account)
        counts = {"events": len(log), "kills": kills, "outages": outages, "lost": lost,
                  "applied twice": twice, "out of order": out_of_order}  # fmt: skip
        line = f"relay faults ({relay_url.split(':')[0]}): {msgspec.json.encode(counts).decode()}"
        print(f"\n{line}")
        figures.append(line)
        assert (lost, twice, out_of_order) == (0, 0, 0)
        assert (kills, outages) == (KILLS, planned_outages)
    finally:
        await views.close()
        await rebuilt.close()
        await events.close()


async def test_relay_to_nats_under_kills_and_outages(
    tmp_path: Path, nats_server: NatsServer, figures: list[str]
) -> None:
    source = open_nats_source(f"{nats_server.url}?group=ledger&ack_wait=5")
    await run_faults(tmp_path, nats_server, source, nats_server.url, figures)


async def test_relay_to_kafka_under_kills(
    tmp_path: Path, tansu_server: TansuServer, figures: list[str]
) -> None:
    # Tansu keeps its topics in memory only: a restart would empty it, which no relay can
    # make up for, so the Kafka run kills the relay and leaves the broker up.
    url = f"{tansu_server.url}?idempotence=false&partitions=4"
    source = open_kafka_source(f"{url}&group=ledger")
    await run_faults(tmp_path, tansu_server, source, url, figures, planned_outages=0)


async def test_relay_to_redis_under_kills_and_outages(tmp_path: Path, figures: list[str]) -> None:
    # A Redis that keeps its streams across a restart (append-only file, synced each write).
    server = RedisServer(tmp_path, redis_binary(), durable=True)
    with running(server):
        source = open_redis_source(f"{server.url}?group=ledger&consumer=ledger-1")
        await run_faults(tmp_path, server, source, server.url, figures)
