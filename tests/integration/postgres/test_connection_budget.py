"""`twofold serve --workers 4` and two `twofold worker`s stay within the connection budget.

docs/postgres.md, *Connections*: each process holds at most ``PER_PROCESS`` connections
(its pool of 4, the writer's two, two LISTEN, the read store's DDL lane) plus one per
projection whose lease it holds; every connection names its process and role in
``application_name``, and no role holds more than its row of the table allows at any
moment. The scenario runs in a database of its own, so every connection to it is one of
these processes', named or not.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.e2e.processes import STARTUP_DEADLINE, environment, serving, twofold
from tests.e2e.test_applied_once import _stop
from tests.integration.postgres.test_http_postgres import shop_round

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PER_PROCESS = 9  # documented in docs/postgres.md
# The table of docs/postgres.md: the most connections of each role in one process.
PER_ROLE = {"pool": 4, "writer": 1, "writer-thread": 1, "listen": 2, "views-admin": 1}
PROJECTIONS = 4  # the shop's
NAME = re.compile(r"twofold (\S+) pid (\d+)")


@contextmanager
def scratch_database(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A database of its own: (its name, a URL to it); dropped afterwards."""
    name = f"twofold_budget_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name, urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


class Census:
    """Samples the connections to one database while the scenario runs; keeps the peak."""

    def __init__(self, postgres_url: str, database: str) -> None:
        self._url = postgres_url
        self._database = database
        self.peak: list[tuple[str, str]] = []  # (application_name, backend pid) at the peak
        self.most: Counter[tuple[str, str]] = Counter()  # (process, role): most at once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Census:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for_processes(self, processes: list[subprocess.Popen[str]]) -> None:
        """Until each process holds a connection to the database (its pid in the name)."""
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not {str(p.pid) for p in processes} <= {pid for pid, _ in list(self.most)}:
            exited = [p.pid for p in processes if p.poll() is not None]
            assert not exited, f"processes {exited} exited before they connected"
            assert time.monotonic() < deadline, "the processes did not connect in time"
            time.sleep(0.05)  # the census's own sampling runs in its thread

    def _run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.wait(0.02):  # sampling rate only; nothing waits on it
                rows = conn.execute(
                    "SELECT application_name, pid::text FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self._database,),
                ).fetchall()
                if len(rows) > len(self.peak):
                    self.peak = rows
                now = Counter(
                    (m.group(2), m.group(1))
                    for m in (NAME.fullmatch(application) for application, _ in rows)
                    if m
                )
                for key, count in now.items():
                    self.most[key] = max(self.most[key], count)


def test_four_api_processes_and_two_workers_stay_within_the_connection_budget(
    postgres_url: str, tmp_path: Path
) -> None:
    with scratch_database(postgres_url) as (database, url_of_database), ExitStack() as stack:
        target = f"{url_of_database}?schema=shop"
        env = environment(TWOFOLD_EVENT_STORE=target, TWOFOLD_READ_STORE=target)
        census = stack.enter_context(Census(postgres_url, database))
        url, _ = stack.enter_context(serving(["--workers", "4"], cwd=tmp_path, env=env))
        workers = [
            twofold("worker", "--retry-interval", "0.1", cwd=tmp_path, env=env) for _ in range(2)
        ]
        try:
            census.wait_for_processes(workers)  # the workers take part before the load

            def rounds(n: int) -> None:
                with httpx.Client(base_url=url, timeout=60.0) as client:
                    shop_round(client, client, n)

            with ThreadPoolExecutor(16) as pool:
                list(pool.map(rounds, range(48)))
        finally:
            outputs = [_stop(w) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], "".join(outputs)
        stack.close()
    peak = census.peak
    names = [NAME.fullmatch(application) for application, _ in peak]
    assert all(names), f"connections that do not name their process: {peak}"
    processes = Counter(m.group(2) for m in names if m)
    leases = Counter(m.group(2) for m in names if m and m.group(1).startswith("lease-"))
    assert len(processes) <= 6, processes
    assert sum(leases.values()) <= PROJECTIONS, leases
    over = {pid: n for pid, n in processes.items() if n - leases[pid] > PER_PROCESS}
    assert not over, f"processes over {PER_PROCESS} connections besides leases: {over}"
    assert len(peak) <= 6 * PER_PROCESS + PROJECTIONS
    roles = {role for _, role in census.most}
    assert {"pool", "writer", "listen"} <= roles, census.most  # the census saw them all
    over_role = {
        (pid, role): n
        for (pid, role), n in census.most.items()
        if n > PER_ROLE.get(role, 1)  # a lease-<projection>: one per process
    }
    assert not over_role, f"roles over their row of the table: {over_role}"
