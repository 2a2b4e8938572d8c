"""``twofold worker`` processes sharing projections through leases (PostgreSQL advisory locks).

Workers run as real subprocesses and are killed with SIGKILL: a dead worker's leases go
with its connections, another worker takes over from the last committed checkpoint, and
the views end up exactly as one clean run builds them. A projection is never applied in
two processes at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.postgres._shop_load import collection_names, populate_shop, snapshot_views
from tests.integration.postgres.conftest import drop_schema
from twofold.adapters.postgres.projections.leases import lease_key
from twofold.application.app import Service
from twofold.application.projections import Projection
from twofold.application.views import Collection, ViewTransaction
from twofold.bootstrap import bootstrap
from twofold.domain.aggregate import when
from twofold.domain.messages import Event
from twofold.examples import shop
from twofold.records import NO_STREAM
from twofold.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]


# -- a projection that logs when it applies, for the exclusion test -------------------------


class Tallied(Event):
    n: int


class TallyProjection(Projection):
    name = "tally"
    collections = (Collection("tallies"),)
    batch_size = 50

    @when(Tallied)
    def _tallied(self, event: Tallied, tx: ViewTransaction) -> None:
        started = time.monotonic_ns()
        tally = tx.get("tallies", tx.record.stream_id) or {"count": 0, "sum": 0}
        tally = {"count": tally["count"] + 1, "sum": tally["sum"] + event.n}
        tx.put("tallies", tx.record.stream_id, tally)
        time.sleep(0.0002)
        _log_apply(started, time.monotonic_ns(), tx.record.position)


def _log_apply(started: int, ended: int, position: int) -> None:
    path = os.environ.get("TWOFOLD_TEST_APPLY_LOG")
    if path:  # one unbuffered append per event: a SIGKILL loses no line but a torn last one
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{os.getpid()} {started} {ended} {position}\n".encode())
        finally:
            os.close(fd)


SERVICE = Service(
    name="tally", register=lambda commands, queries: None, projections=[TallyProjection],
    events=[Tallied],
)  # fmt: skip


# -- helpers ---------------------------------------------------------------------------------


def store_url(postgres_url: str, schema: str) -> str:
    return f"{postgres_url}?schema={schema}"


class Workers:
    """Worker subprocesses, their logs in ``folder``; all killed at the end."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"worker-{len(self.started)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "twofold.cli.main", "worker", *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(10)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.folder.glob("worker-*.log")))


@pytest.fixture
def workers(tmp_path: Path, postgres_url: str, pg_schema: str) -> Iterator[Workers]:
    env = dict(os.environ)
    env.update(
        TWOFOLD_EVENT_STORE=store_url(postgres_url, pg_schema),
        TWOFOLD_READ_STORE=store_url(postgres_url, pg_schema),
        TWOFOLD_TEST_APPLY_LOG=str(tmp_path / "applies.log"),
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "src")]),
    )
    started = Workers(tmp_path, env)
    try:
        yield started
    finally:
        started.stop_all()


def lease_holders(url: str, schema: str, projections: list[str]) -> dict[str, int | None]:
    """projection -> pid of the worker process holding its lease (None: free)."""
    with psycopg.connect(url, autocommit=True) as conn:
        holders: dict[str, int | None] = {}
        for name in projections:
            row = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = "
                "(hashtextextended(%s, 0) & x'ffffffffffffffff'::bigint)",
                (lease_key(schema, name),),
            ).fetchone()
            holders[name] = int(row[0].rsplit(" ", 1)[1]) if row else None
        return holders


def checkpoints(url: str, schema: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f'SELECT p.name, c.position FROM "{schema}".projections p '
            f'JOIN "{schema}".checkpoints c ON c.projection = p.name '
            "AND c.generation = p.generation"
        ).fetchall()
    return {name: int(position) for name, position in rows}


def wait_for(condition: object, timeout: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}; worker logs:\n{workers.logs()[-4000:]}")


# -- the tests -------------------------------------------------------------------------------


async def test_a_killed_worker_is_taken_over_and_the_views_equal_a_clean_run(
    postgres_url: str, pg_schema: str, workers: Workers
) -> None:
    url = store_url(postgres_url, pg_schema)
    app = await bootstrap(shop.SERVICE, Settings(event_store=url, read_store=url,
                                                 projections="off"))  # fmt: skip
    async with app:
        head = await populate_shop(app, 2500)
        names = list(app.runners)
        collections = collection_names(app)
    # Hold every lease here until both workers are up, then let them race for them.
    with psycopg.connect(postgres_url, autocommit=True) as blocker:
        for name in names:
            blocker.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                            (lease_key(pg_schema, name),))  # fmt: skip
        first = workers.start("--retry-interval", "0.02")
        second = workers.start("--retry-interval", "1.0")
        wait_for(lambda: workers.logs().count("shares projections") == 2, 60, "workers", workers)
    # The blocker's connection is closed: the leases are free.
    wait_for(lambda: lease_holders(postgres_url, pg_schema, names)["orders"] is not None, 10,
             "a worker to take the orders lease", workers)  # fmt: skip
    victim_pid = lease_holders(postgres_url, pg_schema, names)["orders"]
    victim = first if first.pid == victim_pid else second
    survivor = second if victim is first else first
    # Kill it mid-catch-up: some batches committed, more under way.
    wait_for(lambda: checkpoints(postgres_url, pg_schema).get("orders", 0) > 0, 30,
             "the first orders batch", workers)  # fmt: skip
    assert checkpoints(postgres_url, pg_schema)["orders"] < head, "killed before the end"
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    wait_for(lambda: set(lease_holders(postgres_url, pg_schema, names).values()) == {survivor.pid},
             60, "the survivor to take every lease", workers)  # fmt: skip
    wait_for(lambda: all(p >= head for p in checkpoints(postgres_url, pg_schema).values()), 60,
             "the survivor to finish", workers)  # fmt: skip

    clean = f"{pg_schema}_clean"
    try:
        reference = await bootstrap(
            shop.SERVICE, Settings(event_store=url, read_store=store_url(postgres_url, clean))
        )
        async with reference:
            await reference.wait_for_projections(head, timeout=60)
        expected = snapshot_views(postgres_url, clean, collections)
        assert snapshot_views(postgres_url, pg_schema, collections) == expected
    finally:
        drop_schema(postgres_url, clean)
    assert survivor.poll() is None, "the survivor is still running"


async def test_two_workers_never_apply_a_projection_at_once(
    postgres_url: str, pg_schema: str, workers: Workers, tmp_path: Path
) -> None:
    url = store_url(postgres_url, pg_schema)
    app = await bootstrap(SERVICE, Settings(event_store=url, read_store=url, projections="off"))
    async with app:
        for s in range(40):
            events = [app.codec.new_event(Tallied(n=k)) for k in range(100)]
            await app.event_store.append(f"t-{s}", events, expected_version=NO_STREAM)
        head = await app.event_store.head_position()
    spec = "tests.integration.postgres.test_worker:SERVICE"
    running = [workers.start(spec, "--retry-interval", "0.05") for _ in range(3)]
    for round_ in range(3):
        target = (round_ + 1) * 400
        wait_for(lambda: checkpoints(postgres_url, pg_schema).get("tally", 0) > target,  # noqa: B023
                 60, f"progress in round {round_}", workers)  # fmt: skip
        holder = lease_holders(postgres_url, pg_schema, ["tally"])["tally"]
        victim = next(p for p in running if p.pid == holder)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        running.remove(victim)
        running.append(workers.start(spec, "--retry-interval", "0.05"))
    wait_for(lambda: checkpoints(postgres_url, pg_schema).get("tally", 0) >= head, 60,
             "the last worker to finish", workers)  # fmt: skip

    intervals: list[tuple[int, int, int]] = []
    for line in (tmp_path / "applies.log").read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            pid, started, ended, _ = map(int, parts)
            intervals.append((started, ended, pid))
    intervals.sort()
    assert len({pid for _, _, pid in intervals}) >= 3, "several workers applied in turn"
    latest_end, latest_pid = 0, 0
    for started, ended, pid in intervals:
        assert pid == latest_pid or started >= latest_end, (
            f"pid {pid} applied at {started} while pid {latest_pid} did until {latest_end}"
        )
        if ended > latest_end:
            latest_end, latest_pid = ended, pid
    with psycopg.connect(postgres_url) as conn:
        tallies = conn.execute(f'SELECT key, doc FROM "{pg_schema}".v_tallies').fetchall()
    assert dict(tallies) == {f"t-{s}": {"count": 100, "sum": 4950} for s in range(40)}
