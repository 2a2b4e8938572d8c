"""Several processes appending to one SQLite file: nothing lost, nothing doubled.

Each child opens its own SQLiteEventStore on the file (as the HTTP service's workers do),
waits for the parent's "go", races the others to create one stream with NO_STREAM, then
appends to shared streams at the version it read, retrying on ConcurrencyError.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.records import uuid7

CHILD = r"""
import asyncio, json, sys
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.records import NO_STREAM, NewEvent, uuid7
from twofold.errors import ConcurrencyError

async def main(path, rounds):
    store = await SQLiteEventStore.open(path)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": every child is open by now
    report = {"race": None, "sent": [], "conflicts": 0}
    try:
        await store.append("race", [NewEvent(event_id=uuid7(), type="Won")],
                           expected_version=NO_STREAM)
        report["race"] = "won"
    except ConcurrencyError as error:
        report["race"] = ["conflict", error.stream_id, error.expected, error.actual]

    async def appender(n):
        for k in range(rounds):
            stream = f"shared-{(n + k) % 3}"
            event = NewEvent(event_id=uuid7(), type="Added")
            while True:
                version = await store.stream_version(stream)
                try:
                    await store.append(stream, [event], expected_version=version)
                    break
                except ConcurrencyError:
                    report["conflicts"] += 1
            report["sent"].append(str(event.event_id))

    await asyncio.gather(*(appender(n) for n in range(4)))
    await store.close()
    print(json.dumps(report), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

PROCESSES = 3
ROUNDS = 25


def start_children(path: Path, script: Path) -> list[subprocess.Popen[str]]:
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), str(ROUNDS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "ready\n", child.communicate()[1]
    return children


def finish(children: list[subprocess.Popen[str]]) -> list[dict[str, object]]:
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    reports = []
    for child in children:
        out, err = child.communicate()
        assert child.returncode == 0, err
        reports.append(json.loads(out.splitlines()[-1]))
    return reports


async def test_processes_appending_to_one_file_lose_and_double_nothing(tmp_path: Path) -> None:
    path, script = tmp_path / "events.db", tmp_path / "child.py"
    script.write_text(CHILD)
    # The file exists before the children race to open it; opening is safe either way.
    await (await SQLiteEventStore.open(path)).close()
    reports = finish(start_children(path, script))

    races = [report["race"] for report in reports]
    assert races.count("won") == 1
    # The losers' ConcurrencyError names the stream, what they expected, and what was there.
    lost = [race for race in races if race != "won"]
    assert lost == [["conflict", "race", "no_stream", 1]] * (PROCESSES - 1)
    sent = [uuid.UUID(i) for report in reports for i in report["sent"]]  # type: ignore[attr-defined]
    assert len(sent) == PROCESSES * 4 * ROUNDS

    async with SQLiteEventStore(path) as store:
        stored = await store.read_all(limit=100_000)
        shared = [e for e in stored if e.stream_id.startswith("shared-")]
        assert Counter(e.event_id for e in shared) == Counter(sent)
        positions = [e.position for e in stored]
        assert all(b > a for a, b in itertools.pairwise(positions))
        for stream in ("shared-0", "shared-1", "shared-2"):
            versions = [e.stream_version for e in await store.read_stream(stream)]
            assert versions == list(range(1, len(versions) + 1))
        assert await store.stream_version("race") == 1


async def test_subscriber_sees_appends_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    # A short poll: the other process's commits do not notify this one.
    async with SQLiteEventStore(path, poll_interval=0.05) as store:
        subscription = store.subscribe()
        pending = asyncio.ensure_future(anext(subscription))
        try:
            event_id = uuid7()
            code = (
                "import asyncio, sys, uuid\n"
                "from twofold.adapters.sqlite.event_store import SQLiteEventStore\n"
                "from twofold.records import NO_STREAM, NewEvent\n"
                "async def main():\n"
                "    async with SQLiteEventStore(sys.argv[1]) as store:\n"
                "        await store.append('elsewhere', [NewEvent(event_id=uuid.UUID(sys.argv[2]),"
                " type='Done')], expected_version=NO_STREAM)\n"
                "asyncio.run(main())\n"
            )
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, str(path), str(event_id)
            )
            assert await child.wait() == 0
            seen = await asyncio.wait_for(pending, 10)
            assert (seen.event_id, seen.stream_id) == (event_id, "elsewhere")
        finally:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
            await subscription.aclose()  # type: ignore[attr-defined]
