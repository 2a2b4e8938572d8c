"""The process's PostgreSQL pool against bare connections: what lending a connection costs.

The workload is the read store's hottest statement: a prepared ``SELECT doc FROM ... WHERE
key = %s`` of a random key among 1,000 small JSONB documents, in a closed loop, by K
asyncio tasks on the loop ``twofold serve`` runs on (``twofold.cli.loop.run``):

- ``pool.get.cK``: the tasks share twofold's ``ConnectionPool`` (size 4), each statement
  in ``async with pool.connection()``, as the stores do;
- ``raw.get.cK`` (K <= 4): each task owns a bare psycopg connection: the limit, with as
  many connections as the pool may open;
- ``raw.get.cK`` (K > 4): the tasks share 4 bare connections handed out by an
  ``asyncio.Queue``: the least any lending can do.

Figures alternate (raw, then pool, for each K, every round), so both see the same load.
Throughput on a shared machine swings with its load; the client's CPU time per read does
not, so it is measured too, with one task (``*.cpu_us``, process CPU µs per read, lower is
better), and so is the cost of lending alone: ``pool.lend.cpu_us`` (``async with
pool.connection(): pass``) against ``raw.lend.cpu_us`` (an ``asyncio.Queue`` of
connections, ``get_nowait``/``put_nowait``), and the same with 16 tasks taking turns on 4
connections, each holding its connection across one turn of the loop (``*.lend16.cpu_us``).

    .venv/bin/python bench/bench_pool.py --repeat 5
    TWOFOLD_BENCH_POSTGRES_URL=postgresql://... .venv/bin/python bench/bench_pool.py

Output: one JSON object per line, then a summary (``_common.Report``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import Report, Target, machine

from twofold.adapters.postgres._pool import ConnectionPool
from twofold.cli.loop import run as run_loop

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROWS = 1000
POOL_SIZE = 4
CONCURRENCY = (1, 4, 16)


def setup(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        ident = sql.Identifier(schema)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(
            sql.SQL("CREATE TABLE {}.docs (key text PRIMARY KEY, doc jsonb)").format(ident)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.docs SELECT 'k' || n, jsonb_build_object('id', n, 'total', n * 10,"
                " 'status', 'open') FROM generate_series(1, %s) n"
            ).format(ident),
            (ROWS,),
        )


def teardown(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


Get = Callable[[str], Awaitable[Any]]


async def closed_loop(tasks: int, get: Get, duration: float) -> float:
    """Statements per second that ``tasks`` tasks complete, each calling ``get`` in a loop."""
    done = 0
    stop = time.perf_counter() + duration

    async def one() -> None:
        nonlocal done
        keys = [f"k{random.randint(1, ROWS)}" for _ in range(256)]
        n = 0
        while time.perf_counter() < stop:
            await get(keys[n % 256])
            n += 1
        done += n

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    return done / (time.perf_counter() - start)


async def cpu_per_call(call: Callable[[int], Awaitable[Any]], n: int) -> float:
    """Process CPU microseconds per ``await call(i)``, median of 5 batches of ``n``."""
    samples = []
    for _ in range(5):
        start = time.process_time()
        for i in range(n):
            await call(i)
        samples.append((time.process_time() - start) / n * 1e6)
    return sorted(samples)[2]


async def contended_cpu(lend: Callable[[], Any], rounds: int = 500) -> float:
    """Process CPU µs per lending when 16 tasks share the connections, each holding one
    across a turn of the loop; ``lend()`` is an async context manager."""

    async def hold(n: int) -> None:
        for _ in range(n):
            async with lend():
                await asyncio.sleep(0)

    await asyncio.gather(*(hold(20) for _ in range(16)))  # warm up: all connections open
    samples = []
    for _ in range(5):
        start = time.process_time()
        await asyncio.gather(*(hold(rounds) for _ in range(16)))
        samples.append((time.process_time() - start) / (16 * rounds) * 1e6)
    return sorted(samples)[2]


async def raw_contended(url: str) -> float:
    conns = [await AsyncConnection.connect(url, autocommit=True) for _ in range(POOL_SIZE)]
    idle: asyncio.Queue[AsyncConnection[Any]] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)

    @asynccontextmanager
    async def lend() -> AsyncIterator[AsyncConnection[Any]]:
        conn = idle.get_nowait() if not idle.empty() else await idle.get()
        try:
            yield conn
        finally:
            idle.put_nowait(conn)

    try:
        return await contended_cpu(lend)
    finally:
        for conn in conns:
            await conn.close()


async def pool_contended(url: str) -> float:
    pool = ConnectionPool(url, size=POOL_SIZE)
    try:
        return await contended_cpu(pool.connection)
    finally:
        await pool.close()


async def raw_cpu(url: str, query: sql.Composed) -> tuple[float, float]:
    """(CPU µs per read on a dedicated connection, CPU µs to lend one from a queue)."""
    conn = await AsyncConnection.connect(url, autocommit=True)
    try:
        idle: asyncio.Queue[AsyncConnection[Any]] = asyncio.Queue()
        idle.put_nowait(conn)

        async def read(i: int) -> Any:
            cur = await conn.execute(query, (f"k{i % ROWS + 1}",), prepare=True)
            return await cur.fetchone()

        async def lend(i: int) -> None:
            lent = idle.get_nowait() if not idle.empty() else await idle.get()
            idle.put_nowait(lent)

        await cpu_per_call(read, 50)  # warm up: plan prepared
        return await cpu_per_call(read, 1000), await cpu_per_call(lend, 20000)
    finally:
        await conn.close()


async def pool_cpu(url: str, query: sql.Composed) -> tuple[float, float]:
    """(CPU µs per read through the pool, CPU µs to lend and take back a connection)."""
    pool = ConnectionPool(url, size=POOL_SIZE)
    try:

        async def read(i: int) -> Any:
            async with pool.connection() as conn:
                cur = await conn.execute(query, (f"k{i % ROWS + 1}",), prepare=True)
                return await cur.fetchone()

        async def lend(i: int) -> None:
            async with pool.connection():
                pass

        await cpu_per_call(read, 50)  # warm up: connection opened, plan prepared
        return await cpu_per_call(read, 1000), await cpu_per_call(lend, 20000)
    finally:
        await pool.close()


async def raw_rate(url: str, query: sql.Composed, tasks: int, duration: float) -> float:
    conns = [
        await AsyncConnection.connect(url, autocommit=True) for _ in range(min(tasks, POOL_SIZE))
    ]
    try:
        idle: asyncio.Queue[AsyncConnection[Any]] = asyncio.Queue()
        for conn in conns:
            idle.put_nowait(conn)

        async def get(key: str) -> Any:
            conn = idle.get_nowait() if not idle.empty() else await idle.get()
            try:
                cur = await conn.execute(query, (key,), prepare=True)
                return await cur.fetchone()
            finally:
                idle.put_nowait(conn)

        await closed_loop(tasks, get, 0.3)  # warm up: plans prepared
        return await closed_loop(tasks, get, duration)
    finally:
        for conn in conns:
            await conn.close()


async def pool_rate(url: str, query: sql.Composed, tasks: int, duration: float) -> float:
    pool = ConnectionPool(url, size=POOL_SIZE)
    try:

        async def get(key: str) -> Any:
            async with pool.connection() as conn:
                cur = await conn.execute(query, (key,), prepare=True)
                return await cur.fetchone()

        await closed_loop(tasks, get, 0.3)  # warm up: connections opened, plans prepared
        return await closed_loop(tasks, get, duration)
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TWOFOLD_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--repeat", type=int, default=3, help="report medians of N runs")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per figure")
    args = parser.parse_args(argv)
    url: str = args.url
    schema = f"bench_pool_{uuid.uuid4().hex[:8]}"
    setup(url, schema)
    query = sql.SQL("SELECT doc FROM {}.docs WHERE key = %s").format(sql.Identifier(schema))
    report = Report()
    try:
        for round_ in range(args.repeat):
            sys.stderr.write(f"round {round_ + 1} of {args.repeat}\n")
            raw_read, raw_lend = run_loop(raw_cpu(url, query))
            report.add("raw.read.cpu_us", raw_read, "µs")
            report.add("raw.lend.cpu_us", raw_lend, "µs")
            pool_read, pool_lend = run_loop(pool_cpu(url, query))
            report.add("pool.read.cpu_us", pool_read, "µs", ratio_vs="raw.read.cpu_us")
            report.add("pool.lend.cpu_us", pool_lend, "µs", ratio_vs="raw.lend.cpu_us")
            report.add("raw.lend16.cpu_us", run_loop(raw_contended(url)), "µs")
            report.add(
                "pool.lend16.cpu_us",
                run_loop(pool_contended(url)),
                "µs",
                ratio_vs="raw.lend16.cpu_us",
            )
            for tasks in CONCURRENCY:
                raw = run_loop(raw_rate(url, query, tasks, args.duration))
                report.add(f"raw.get.c{tasks}", raw, "reads/s")
                mine = run_loop(pool_rate(url, query, tasks, args.duration))
                report.add(f"pool.get.c{tasks}", mine, "reads/s", ratio_vs=f"raw.get.c{tasks}")
    finally:
        teardown(url, schema)
    report.emit(
        {
            "repeat": args.repeat,
            "machine": machine(),
            "notes": [
                f"{args.duration:g} s per figure; pool of {POOL_SIZE}; raw: one connection per "
                f"task up to {POOL_SIZE}, then {POOL_SIZE} shared through an asyncio.Queue",
            ],
        },
        TARGETS,
    )
    return 0


TARGETS = [
    Target("pool, 1 task >= 0.9x a bare connection", "pool.get.c1", "raw.get.c1", ">=", 0.9),
    Target("pool, 16 tasks >= 0.9x bare lending", "pool.get.c16", "raw.get.c16", ">=", 0.9),
    Target(
        "pool: client CPU per read <= 1.1x a bare connection's",
        "pool.read.cpu_us",
        "raw.read.cpu_us",
        "<=",
        1.1,
    ),
]


if __name__ == "__main__":
    raise SystemExit(main())
