"""Rebuild speed (issue 11, item 8): twofold's rebuild and catch-up against the bare driver.

A log of the shop's events (60% orders created, 40% shipped or cancelled, plus the users
and products they name) is built once per backend, not measured. Then, in the same run and
taking turns, ``--repeat`` times:

- ``twofold.<db>.rebuild``: ``App.rebuild("orders", progress=...)`` with a rich progress
  bar on (events done of total, rate, time left), blue/green as in production;
- ``twofold.<db>.catch_up``: a fresh read store, and the ``orders`` runner's
  ``catch_up()`` from position 0 (what a new server or ``twofold worker`` does first);
- ``bare.<db>.rebuild``: the bare driver (``sqlite3``; psycopg) reading the log 1,000 events
  at a time, decoding them, building the very same documents by hand and upserting each
  batch's changed documents plus a checkpoint in one transaction (``executemany``), with
  the read store's durability (SQLite: WAL, ``synchronous=NORMAL``; PostgreSQL: its
  defaults, ``synchronous_commit=on``). Its documents are checked equal to twofold's.

Figures are events/s (events in the log over wall time), medians over the repeats; ratios
are twofold's median over the bare median. Target: at least 0.75 of the bare rate, for the
rebuild and the catch-up, on both backends. Also printed: ``paired.*``, the median of each
round's own ratio (robust when the machine's load changes between rounds), and on SQLite
``cpu.*``, events per CPU-second of this process (all the work, when the store is SQLite:
what the figures would be on an idle machine's one core).

    .venv/bin/python bench/bench_rebuild.py --repeat 5          # full: a few minutes
    .venv/bin/python bench/bench_rebuild.py --quick             # smoke run
    .venv/bin/python bench/bench_rebuild.py --only sqlite       # one backend
    TWOFOLD_BENCH_POSTGRES_URL=postgresql://... .venv/bin/python bench/bench_rebuild.py

Output: one JSON object per line (see ``_common.Report``), then a summary with the targets
(exit status 0 even when a target fails: it is a measurement, not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import _pg_views
import bench_core
from _common import Report, Target, machine, stopwatch

from twofold import App, Settings, bootstrap
from twofold.examples import shop

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
FULL_EVENTS = 40_000
QUICK_EVENTS = 4_000
BARE_BATCH = 1000
PROJECTION = "orders"


class EventRate(ProgressColumn):
    """Events per second, as the bar's task measures them."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("" if speed is None else f"{speed:,.0f} events/s", style="progress.data.speed")


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, as ``twofold projections rebuild`` shows it; yields
    the ``progress(done, total)`` callback to hand to ``App.rebuild``."""
    console = Console(file=sys.stderr, force_terminal=True, width=100)
    with Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        EventRate(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(title, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


async def build_log(settings: Settings, events: int) -> App:
    """The shop with at least ``events`` events in its log; no projection has run."""
    app = await bootstrap(shop.SERVICE, settings)
    await app.start()
    await bench_core.seed_shop(app)
    orders = int(events * 0.6) + 1
    await bench_core.drive(app.dispatch, [bench_core.create_order(i) for i in range(orders)], 32)
    changes = [bench_core.ship_or_cancel(i) for i in range(events - orders)]
    await bench_core.drive(app.dispatch, changes, 32)
    return app


@dataclass
class Round:
    """One round's figures: events/s (wall) and events per CPU-second of this process."""

    events: int
    rates: dict[str, float] = field(default_factory=dict)
    cpu_rates: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timing(self, what: str) -> Iterator[None]:
        cpu = time.process_time()
        with stopwatch() as elapsed:
            yield
        self.cpu_rates[what] = self.events / max(time.process_time() - cpu, 1e-9)
        self.rates.setdefault(what, self.events / elapsed[0])

    def report(self, report: Report, db: str, *, cpu: bool) -> None:
        bare = f"bare.{db}.rebuild"
        report.add(bare, self.rates["bare"], "events/s", note=f"{BARE_BATCH} per commit")
        for what in ("rebuild", "catch_up"):
            mine = f"twofold.{db}.{what}"
            report.add(mine, self.rates[what], "events/s", ratio_vs=bare, note=_NOTES[what])
        for what in ("rebuild", "catch_up"):
            paired = self.rates[what] / self.rates["bare"]
            report.add(f"paired.{db}.{what}", paired, "x bare", note="median of per-round ratios")
        if cpu:  # SQLite: all the work is in this process, so its CPU time is all of it
            report.add(f"cpu.bare.{db}.rebuild", self.cpu_rates["bare"], "events/cpu-s")
            for what in ("rebuild", "catch_up"):
                report.add(
                    f"cpu.twofold.{db}.{what}",
                    self.cpu_rates[what],
                    "events/cpu-s",
                    ratio_vs=f"cpu.bare.{db}.rebuild",
                )


_NOTES = {"rebuild": "App.rebuild, progress bar on", "catch_up": "runner.catch_up() from 0"}


async def twofold_rebuild(app: App, round_: Round) -> None:
    with progress_bar(f"rebuild {PROJECTION}") as progress, round_.timing("rebuild"):
        reached = await app.rebuild(PROJECTION, progress=progress)
    assert reached == round_.events, (reached, round_.events)


async def twofold_catch_up(settings: Settings, round_: Round) -> App:
    """Catch up from 0 into the fresh read store of ``settings``; returns the app (open)."""
    app = await bootstrap(shop.SERVICE, settings)
    await app.start()
    runner = app.runner(PROJECTION)
    assert runner.checkpoint == 0, runner.checkpoint
    with round_.timing("catch_up"):
        reached = await runner.catch_up()
    assert reached == round_.events, (reached, round_.events)
    return app


# -- SQLite ----------------------------------------------------------------------------------


async def bench_sqlite(folder: Path, events: int, repeat: int, report: Report) -> None:
    sys.stderr.write(f"sqlite: building a log of {events:,} events in {folder} ...\n")
    log = bench_core.shop_settings(folder)
    app = await build_log(log, events)
    events_db = Path(app.event_store.path)  # type: ignore[attr-defined]
    head = await app.event_store.head_position()
    try:
        for number in range(1, repeat + 1):
            sys.stderr.write(f"sqlite: round {number} of {repeat}\n")
            round_ = Round(head)
            bare_db = folder / "bare-views.db"
            with round_.timing("bare"):
                round_.rates["bare"] = bench_core.bare_rebuild(
                    events_db, bare_db, batch=BARE_BATCH, secure_delete="FAST"
                )
            await twofold_rebuild(app, round_)
            bench_core.same_documents(app, bare_db)
            fresh = Settings(
                event_store=log.event_store,
                read_store=f"sqlite:///{folder}/catch-up-{number}.db",
                projections="off",
            )
            caught = await twofold_catch_up(fresh, round_)
            try:
                bench_core.same_documents(caught, bare_db)
            finally:
                await caught.close()
            round_.report(report, "sqlite", cpu=True)
    finally:
        await app.close()


# -- PostgreSQL ------------------------------------------------------------------------------


async def bench_postgres(url: str, events: int, repeat: int, report: Report) -> None:
    schema = f"bench_rebuild_{uuid.uuid4().hex[:8]}"
    created = [schema]
    sys.stderr.write(f"postgres: building a log of {events:,} events in schema {schema} ...\n")
    store = f"{url}?schema={schema}"
    app = await build_log(Settings(event_store=store, read_store=store, projections="off"), events)
    head = await app.event_store.head_position()
    try:
        for number in range(1, repeat + 1):
            sys.stderr.write(f"postgres: round {number} of {repeat}\n")
            round_ = Round(head)
            bare = f"{schema}_bare{number}"
            created.append(bare)
            with round_.timing("bare"):
                round_.rates["bare"] = await asyncio.to_thread(
                    _pg_views.bare_rebuild, url, schema, bare, batch=BARE_BATCH
                )
            await twofold_rebuild(app, round_)
            _pg_views.same_documents(url, schema, bare)
            views = f"{schema}_views{number}"
            created.append(views)
            fresh = Settings(
                event_store=store, read_store=f"{url}?schema={views}", projections="off"
            )
            caught = await twofold_catch_up(fresh, round_)
            try:
                _pg_views.same_documents(url, views, bare)
            finally:
                await caught.close()
            _drop(url, bare)
            _drop(url, views)
            round_.report(report, "postgres", cpu=False)
    finally:
        await app.close()
        for name in reversed(created):
            _drop(url, name)


def _drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _postgres_facts(url: str) -> str:
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    return (
        f"PostgreSQL {version[0] if version else '?'}, synchronous_commit="
        f"{sync[0] if sync else '?'} for twofold and bare psycopg"
    )


TARGETS = [
    Target(
        f"{db} {what} >= 0.75 of bare {db}",
        f"twofold.{db}.{what}",
        f"bare.{db}.rebuild",
        ">=",
        0.75,
    )
    for db in ("sqlite", "postgres")
    for what in ("rebuild", "catch_up")
]


async def run(args: argparse.Namespace) -> None:
    events = QUICK_EVENTS if args.quick else args.events
    report = Report()
    notes = [
        f"a log of {events:,} shop events; twofold's orders projection vs the bare driver "
        f"building the same documents, {BARE_BATCH} events per transaction",
        "rebuild: App.rebuild with a rich progress bar on (stderr); catch-up: a fresh "
        "read store, runner.catch_up() from 0",
        "views: SQLite WAL + synchronous=NORMAL + secure_delete=FAST for twofold and bare sqlite3",
        "paired.*: median over rounds of twofold / bare in the same round; cpu.*: events per "
        "CPU-second of the benchmark's process (SQLite only)",
    ]
    backends = args.only or ["sqlite", "postgres"]
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="twofold-rebuild-", dir=args.dir) as tmp:
            await bench_sqlite(Path(tmp), events, args.repeat, report)
    if "postgres" in backends:
        notes.append(_postgres_facts(args.url))
        await bench_postgres(args.url, events, args.repeat, report)
    meta = {
        "repeat": args.repeat,
        "events": events,
        "bare_batch": BARE_BATCH,
        "machine": machine(),
        "load_average": os.getloadavg(),
        "notes": notes,
    }
    report.emit(meta, [t for t in TARGETS if t.bench.split(".")[1] in backends])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TWOFOLD_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--repeat", type=int, default=3, help="report medians of N runs")
    parser.add_argument("--events", type=int, default=FULL_EVENTS, help="events in the log")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events")
    parser.add_argument(
        "--only", action="append", choices=["sqlite", "postgres"], help="one backend (repeatable)"
    )
    parser.add_argument(
        "--dir", default=None, help="folder for the SQLite files (default: the system's temp)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if args.events < 100:
        parser.error("--events must be 100 or more")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
