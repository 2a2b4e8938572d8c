"""twofold's PostgreSQL event store against the raw limit and the ``eventsourcing`` library.

The workload: every writer appends one event at a time to its own stream, at the exact
next version, as fast as it can, for a fixed time. Writers are spread over processes (at
most ``--processes``, default 8); within a process they are asyncio tasks for twofold and
threads for the synchronous baselines. Every system commits with PostgreSQL's defaults
(``synchronous_commit=on``): the same durability.

- ``twofold.append.wN``: PostgresEventStore.append (group commit inside each process).
- ``raw.commit_per_event.wN``: bare psycopg, one autocommit INSERT per event into a copy
  of twofold's events table (same columns and indexes): the limit for one commit per event.
- ``raw.executemany.wN`` / ``raw.copy.wN``: bare psycopg, 1,000 events per transaction.
- ``es.append.wN``: eventsourcing 9.5.6, ``PostgresApplicationRecorder.insert_events``
  (its event store layer; it locks the table for each insert), configured by its
  ``POSTGRES_*`` environment settings.
- ``twofold.pg.create_order.c1/c16``, ``twofold.pg.rebuild.orders`` vs ``bare.pg.rebuild``:
  the shop with events and views in PostgreSQL (``_pg_views``).

    .venv/bin/python bench/bench_postgres.py --repeat 3          # full run (minutes)
    .venv/bin/python bench/bench_postgres.py --quick             # smoke run
    TWOFOLD_BENCH_POSTGRES_URL=postgresql://... bench/bench_postgres.py

Output: one JSON object per line, then a summary with the targets (exit status 0 even when
a target fails: it is a measurement). Needs ``eventsourcing[postgres]==9.5.6``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import Report, Target, machine
from _pg_views import FULL_VIEWS, QUICK_VIEWS, bench_views

from twofold.adapters.postgres import PostgresEventStore, migrate
from twofold.cli.loop import run as run_loop
from twofold.records import NO_STREAM, NewEvent, uuid7

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
DATA = b'{"order_id": "o-1042", "customer_id": "u-7", "amount": "129.90", "currency": "EUR"}'
META = b'{"correlation_id": "9f1c", "actor": "bench"}'
BATCH = 1000
COLUMNS = "event_id, stream_id, stream_version, type, schema_version, data, metadata"

# A worker: (url, schema, concurrency, start, duration, results) -> puts its event count.
Worker = Callable[[str, str, int, MpEvent, float, "mp.Queue[Any]"], None]


# -- workers (module level: they run in spawned processes) ------------------------------------


def twofold_worker(
    url: str, schema: str, tasks: int, start: MpEvent, duration: float, results: mp.Queue[Any]
) -> None:
    async def main() -> int:
        store = await PostgresEventStore.open(url, schema=schema, migrate_schema=False)
        try:
            streams = [f"w-{os.getpid()}-{n}" for n in range(tasks)]
            versions = [0] * tasks
            for n, stream in enumerate(streams):  # warm up: connections, prepared plans
                await store.append(stream, [_event()], expected_version=NO_STREAM)
                versions[n] = 1
            results.put("ready")
            await asyncio.to_thread(start.wait)
            deadline = time.perf_counter() + duration
            counts = [0] * tasks

            async def writer(n: int) -> None:
                while time.perf_counter() < deadline:
                    result = await store.append(
                        streams[n], [_event()], expected_version=versions[n]
                    )
                    versions[n] = result.version
                    counts[n] += 1

            await asyncio.gather(*(writer(n) for n in range(tasks)))
            return sum(counts)
        finally:
            await store.close()

    # The loop `twofold serve` and `twofold worker` run on (uvloop where installed).
    results.put(run_loop(main()))


def _event() -> NewEvent:
    return NewEvent(event_id=uuid7(), type="OrderPlaced", data=DATA, metadata=META)


def _raw_worker(mode: str) -> Worker:
    return {"commit": raw_commit_worker, "executemany": raw_many_worker, "copy": raw_copy_worker}[
        mode
    ]


def _threads(
    body: Callable[[int, float], int],
    threads: int,
    start: MpEvent,
    duration: float,
    results: mp.Queue[Any],
    warm: Callable[[int], None],
) -> None:
    """Run ``body(thread_no, deadline)`` in threads after the start signal; put the sum."""
    counts = [0] * threads
    for n in range(threads):
        warm(n)
    results.put("ready")
    start.wait()
    deadline = time.perf_counter() + duration

    def run(n: int) -> None:
        counts[n] = body(n, deadline)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    results.put(sum(counts))


def _raw_insert(schema: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {}.events (" + COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s)"
    ).format(sql.Identifier(schema))


def raw_commit_worker(
    url: str, schema: str, threads: int, start: MpEvent, duration: float, results: mp.Queue[Any]
) -> None:
    conns = [psycopg.connect(url, autocommit=True) for _ in range(threads)]
    insert = _raw_insert(schema)
    streams = [f"w-{os.getpid()}-{n}" for n in range(threads)]
    versions = [0] * threads

    def one(n: int) -> None:
        versions[n] += 1
        conns[n].execute(insert, (uuid7(), streams[n], versions[n], "OrderPlaced", 1, DATA, META))

    def body(n: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            one(n)
            done += 1
        return done

    try:
        _threads(body, threads, start, duration, results, one)
    finally:
        for conn in conns:
            conn.close()


def _rows(stream: str, first_version: int) -> list[tuple[Any, ...]]:
    return [
        (uuid7(), stream, first_version + i, "OrderPlaced", 1, DATA, META) for i in range(BATCH)
    ]


def raw_many_worker(
    url: str, schema: str, threads: int, start: MpEvent, duration: float, results: mp.Queue[Any]
) -> None:
    conns = [psycopg.connect(url) for _ in range(threads)]
    insert = _raw_insert(schema)
    versions = [0] * threads

    def batch(n: int) -> None:
        rows = _rows(f"w-{os.getpid()}-{n}", versions[n] + 1)
        versions[n] += BATCH
        with conns[n].transaction(), conns[n].cursor() as cur:
            cur.executemany(insert, rows)

    def body(n: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            batch(n)
            done += BATCH
        return done

    try:
        _threads(body, threads, start, duration, results, batch)
    finally:
        for conn in conns:
            conn.close()


def raw_copy_worker(
    url: str, schema: str, threads: int, start: MpEvent, duration: float, results: mp.Queue[Any]
) -> None:
    conns = [psycopg.connect(url) for _ in range(threads)]
    copy_sql = sql.SQL("COPY {}.events (" + COLUMNS + ") FROM STDIN").format(sql.Identifier(schema))
    versions = [0] * threads

    def batch(n: int) -> None:
        rows = _rows(f"w-{os.getpid()}-{n}", versions[n] + 1)
        versions[n] += BATCH
        with conns[n].transaction(), conns[n].cursor() as cur, cur.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)

    def body(n: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            batch(n)
            done += BATCH
        return done

    try:
        _threads(body, threads, start, duration, results, batch)
    finally:
        for conn in conns:
            conn.close()


def es_env(url: str, schema: str, pool_size: int) -> dict[str, str]:
    """eventsourcing's own settings for the same server, in its POSTGRES_* variables."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(info.get("dbname", "postgres")),
        "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(info.get("port", "5432")),
        "POSTGRES_USER": str(info.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(info.get("password", "")),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "CREATE_TABLE": "no",
    }


def es_worker(
    url: str, schema: str, threads: int, start: MpEvent, duration: float, results: mp.Queue[Any]
) -> None:
    from eventsourcing.persistence import InfrastructureFactory, StoredEvent

    factory = InfrastructureFactory.construct(env=es_env(url, schema, threads))
    recorder = factory.application_recorder()
    ids = [uuid.uuid4() for _ in range(threads)]
    versions = [0] * threads

    def one(n: int) -> None:
        versions[n] += 1
        recorder.insert_events(
            [
                StoredEvent(
                    originator_id=ids[n],
                    originator_version=versions[n],
                    topic="bench:OrderPlaced",
                    state=DATA,
                )
            ]
        )

    def body(n: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            one(n)
            done += 1
        return done

    try:
        _threads(body, threads, start, duration, results, one)
    finally:
        factory.close()


# -- driving ----------------------------------------------------------------------------------


def layout(writers: int, max_processes: int) -> tuple[int, int]:
    """(processes, writers per process) for ``writers`` writers."""
    processes = min(writers, max_processes)
    return processes, writers // processes


def drive(
    worker: Worker, url: str, schema: str, writers: int, processes: int, duration: float
) -> float:
    """Events/s of ``writers`` writers over ``processes`` processes, after all are ready."""
    ctx = mp.get_context("spawn")
    results: mp.Queue[Any] = ctx.Queue()
    start = ctx.Event()
    per_process = writers // processes
    procs = [
        ctx.Process(target=worker, args=(url, schema, per_process, start, duration, results))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            if _get(results, procs) != "ready":
                raise RuntimeError("a worker failed before starting")
        start.set()
        total = sum(int(_get(results, procs)) for _ in procs)
    except BaseException:
        for proc in procs:  # the others may wait for a start that will not come
            proc.terminate()
        raise
    finally:
        for proc in procs:
            proc.join(timeout=60)
    return total / duration


def _get(results: mp.Queue[Any], procs: Sequence[Any]) -> Any:
    while True:
        try:
            return results.get(timeout=1)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a benchmark worker process failed") from None


def admin(url: str, statement: sql.Composable) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def fresh_schema(url: str, kind: str) -> str:
    """A new schema holding what ``kind`` writes to; the caller drops it."""
    schema = f"bench_{kind}_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(schema)
    if kind in ("twofold", "raw"):

        async def create() -> None:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                await migrate(conn, schema)

        asyncio.run(create())
    if kind == "raw":
        # The same table as twofold's; bare inserts take positions from its sequence.
        admin(
            url,
            sql.SQL("ALTER TABLE {}.events ALTER position SET DEFAULT nextval({})").format(
                ident, sql.Literal(f"{schema}.event_position")
            ),
        )
    if kind == "es":
        from eventsourcing.persistence import InfrastructureFactory

        admin(url, sql.SQL("CREATE SCHEMA {}").format(ident))
        env = {**es_env(url, schema, 1), "CREATE_TABLE": "yes"}
        factory = InfrastructureFactory.construct(env=env)
        factory.application_recorder()
        factory.close()
    return schema


def measure(
    report: Report,
    bench: str,
    kind: str,
    worker: Worker,
    url: str,
    writers: int,
    processes: int,
    duration: float,
    ratio_vs: str | None,
) -> None:
    schema = fresh_schema(url, kind)
    try:
        rate = drive(worker, url, schema, writers, processes, duration)
    finally:
        admin(url, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    report.add(
        bench,
        rate,
        "events/s",
        ratio_vs=ratio_vs,
        note=f"{processes} process(es) x {writers // processes} writer(s)",
    )


TARGETS = [
    Target(
        "twofold, 8 writers >= raw one-commit-per-event, 8 writers",
        "twofold.append.w8",
        "raw.commit_per_event.w8",
        ">=",
        1.0,
    ),
    Target(
        "twofold, 8 writers >= 3x eventsourcing, 8 writers",
        "twofold.append.w8",
        "es.append.w8",
        ">=",
        3.0,
    ),
    Target(
        "twofold, 32 writers >= raw one-commit-per-event, 32 writers",
        "twofold.append.w32",
        "raw.commit_per_event.w32",
        ">=",
        1.0,
    ),
    Target(
        "twofold, 32 writers >= 3x eventsourcing, 32 writers",
        "twofold.append.w32",
        "es.append.w32",
        ">=",
        3.0,
    ),
    Target(
        "twofold rebuild of orders on PostgreSQL >= 50% of bare psycopg",
        "twofold.pg.rebuild.orders",
        "bare.pg.rebuild",
        ">=",
        0.5,
    ),
]


def run(args: argparse.Namespace) -> None:
    url: str = args.url
    report = Report()
    writer_counts: list[int] = args.writers or [1, 8, 32]
    for round_ in range(args.repeat):
        sys.stderr.write(f"round {round_ + 1} of {args.repeat}\n")
        if not args.appends_only:
            asyncio.run(bench_views(url, QUICK_VIEWS if args.quick else FULL_VIEWS, report))
        if args.views_only:
            continue
        for writers in writer_counts:
            procs, _ = layout(writers, args.processes)
            raw = f"raw.commit_per_event.w{writers}"
            measure(report, raw, "raw", raw_commit_worker, url, writers, procs, args.duration, None)
            measure(
                report,
                f"twofold.append.w{writers}",
                "twofold",
                twofold_worker,
                url,
                writers,
                procs,
                args.duration,
                raw,
            )
            measure(
                report,
                f"es.append.w{writers}",
                "es",
                es_worker,
                url,
                writers,
                procs,
                args.duration,
                raw,
            )
        if args.writers:
            continue  # only the figures asked for
        # Group commit inside one process: many writers, one connection writing.
        measure(
            report,
            "twofold.append.w32.one_process",
            "twofold",
            twofold_worker,
            url,
            32,
            1,
            args.duration,
            "raw.commit_per_event.w32",
        )
        for writers in (1, 8):
            procs, _ = layout(writers, args.processes)
            for mode in ("executemany", "copy"):
                measure(
                    report,
                    f"raw.{mode}.w{writers}",
                    "raw",
                    _raw_worker(mode),
                    url,
                    writers,
                    procs,
                    args.duration,
                    f"raw.commit_per_event.w{writers}",
                )
    with psycopg.connect(url) as conn:
        server = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    ratios = [("twofold.append", "es.append")]
    notes = [
        f"PostgreSQL {server[0] if server else '?'}, synchronous_commit="
        f"{sync[0] if sync else '?'} for every system",
        f"{args.duration:g} s per figure; writers over at most {args.processes} processes "
        "(asyncio tasks for twofold, threads for the baselines)",
    ]
    for writers in writer_counts:
        for mine, theirs in ratios:
            ratio = report.ratio(f"{mine}.w{writers}", f"{theirs}.w{writers}")
            if ratio is not None:
                notes.append(f"{mine}.w{writers} / {theirs}.w{writers} = {ratio:.2f}x")
    meta = {
        "repeat": args.repeat,
        "machine": machine(),
        "notes": notes,
        "duration_s": args.duration,
        "max_processes": args.processes,
    }
    report.emit(meta, TARGETS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TWOFOLD_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--repeat", type=int, default=1, help="report medians of N runs")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per figure")
    parser.add_argument("--processes", type=int, default=8, help="most writer processes")
    parser.add_argument("--quick", action="store_true", help="1 s per figure, one round")
    parser.add_argument(
        "--views-only",
        action="store_true",
        help="only the shop figures (commands, rebuild), not the appends",
    )
    parser.add_argument(
        "--appends-only", action="store_true", help="only the append figures, not the shop's"
    )
    parser.add_argument(
        "--writers",
        type=int,
        action="append",
        help="only this many writers (repeatable; default 1, 8 and 32)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 1.0, 1
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
