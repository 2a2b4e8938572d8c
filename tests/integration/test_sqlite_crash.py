"""A process killed mid-append loses no acknowledged event and leaves a readable file.

The child appends from several tasks (so commits are grouped) and prints each
acknowledged event after its append returned; the parent kills it with SIGKILL at some
point of the run, then checks the file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.records import NO_STREAM
from twofold.testing.event_store_contract import new_event

CHILD = r"""
import asyncio, sys
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.records import NO_STREAM
from twofold.testing.event_store_contract import new_event
from twofold.records import ANY, NewEvent, uuid7

async def main(path):
    store = await SQLiteEventStore.open(path)

    async def appender(n):
        while True:
            events = [NewEvent(event_id=uuid7(), type="Ticked") for _ in range(1 + n % 3)]
            result = await store.append(f"crash-{n}", events, expected_version=ANY)
            for event in result.events:
                print(event.position, event.stream_id, event.event_id, flush=True)

    await asyncio.gather(*(appender(n) for n in range(8)))

asyncio.run(main(sys.argv[1]))
"""


def run_and_kill(path: Path, script: Path, acknowledged_before_kill: int) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < acknowledged_before_kill:
            line = child.stdout.readline()
            if not line:  # it died on its own: its stderr says why
                assert child.stderr is not None
                pytest.fail(f"the child stopped before it was killed: {child.stderr.read()}")
            lines.append(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # Lines it printed before dying were acknowledged too. Read them through the same
    # reader: it may hold some of them already.
    rest = child.stdout.read()
    child.stdout.close()
    if child.stderr is not None:
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    # A line cut by the kill is incomplete: its append was acknowledged only if it is whole.
    return [line for line in [*lines, *rest.splitlines(keepends=True)] if line.endswith("\n")]


@pytest.mark.parametrize("acknowledged_before_kill", [1, 40, 400])
async def test_killed_writer_loses_no_acknowledged_event(
    tmp_path: Path, acknowledged_before_kill: int
) -> None:
    path, script = tmp_path / "events.db", tmp_path / "child.py"
    script.write_text(CHILD)
    lines = run_and_kill(path, script, acknowledged_before_kill)

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()

    acknowledged: dict[uuid.UUID, tuple[int, str]] = {}
    for line in lines:
        position, stream_id, printed_id = line.split()
        acknowledged[uuid.UUID(printed_id)] = (int(position), stream_id)
    assert len(acknowledged) >= acknowledged_before_kill

    async with SQLiteEventStore(path) as store:
        stored: dict[uuid.UUID, tuple[int, str]] = {}
        after = 0
        while page := await store.read_all(after=after, limit=1000):
            stored.update({e.event_id: (e.position, e.stream_id) for e in page})
            after = page[-1].position
        for event_id, place in acknowledged.items():
            assert stored.get(event_id) == place, f"acknowledged event {event_id} is missing"
        # The store goes on from where the killed process stopped.
        head = await store.head_position()
        assert head == max(position for position, _ in stored.values())
        after_crash = await store.append("after", [new_event()], expected_version=NO_STREAM)
        assert after_crash.position == head + 1
