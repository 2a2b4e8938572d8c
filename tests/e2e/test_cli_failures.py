"""How the operating commands fail (one line on stderr, exit 1 or 2, nothing changed), on
a user's own service with --app, and `twofold doctor`."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from tests.e2e.cli_helpers import Stores, cli, cli_json, one_line_failure
from tests.e2e.poison import append_to, poison_order
from tests.e2e.processes import REPO, environment, free_port, run_twofold
from twofold import Settings
from twofold.bootstrap import bootstrap
from twofold.cli.doctor import reachable
from twofold.examples import shop


def folder_stores(folder: Path) -> Stores:
    """SQLite stores in ``folder`` (not created: nothing is there yet)."""
    return Stores(
        kind="sqlite",
        events=f"sqlite:///{folder}/events.db",
        views=f"sqlite:///{folder}/views.db",
        folder=folder,
    )


async def create(stores: Stores, user: bool = False) -> None:
    """Create the shop's stores, as a first `twofold serve` does; with ``user``, one event
    in the log, applied by every projection (this process runs them)."""
    settings = Settings(event_store=stores.events, read_store=stores.views)
    async with await bootstrap(shop.SERVICE, settings) as app:
        if user:
            created = await app.dispatch(
                shop.CreateUser(user_id="u1", email="u1@example.com", name="A")
            )
            await app.wait_for_projections(created.position)


@pytest.fixture
def sqlite_stores(tmp_path: Path) -> Stores:
    """The shop's stores in a SQLite folder, created (empty)."""
    stores = folder_stores(tmp_path)
    asyncio.run(create(stores))
    return stores


def test_an_unknown_projection_is_named_with_the_known_ones(sqlite_stores: Stores) -> None:
    done = cli(sqlite_stores, "projections", "rebuild", "nope")
    line = one_line_failure(done, 1, "twofold projections rebuild")
    assert "'nope'" in line and all(n in line for n in ("users", "products", "orders", "blog"))


def test_a_wrong_command_line_is_one_line_with_status_2(sqlite_stores: Stores) -> None:
    both = cli(sqlite_stores, "projections", "rebuild", "orders", "--all")
    assert "name one projection, or pass --all" in one_line_failure(
        both, 2, "twofold projections rebuild"
    )
    missing = cli(sqlite_stores, "dead-letters", "show", "orders")
    line = one_line_failure(missing, 2, "twofold dead-letters show")
    assert "POSITION" in line and "--help" in line
    limit = cli(sqlite_stores, "streams", "list", "--limit", "0")
    assert "--limit: must be between 1 and" in one_line_failure(limit, 2, "twofold streams list")


def test_wrong_settings_are_one_line_with_status_2(tmp_path: Path) -> None:
    done = cli(folder_stores(tmp_path), "projections", "status", TWOFOLD_PROJECTIONS="maybe")
    line = one_line_failure(done, 2, "twofold projections status")
    assert "TWOFOLD_PROJECTIONS must be 'run' or 'off'" in line
    assert not list(tmp_path.iterdir()), "a refused command creates no store"


def test_a_store_that_is_not_there_is_refused_not_created(tmp_path: Path) -> None:
    # Run in the wrong folder, a command would otherwise report on empty stores it made.
    done = run_twofold("projections", "status", cwd=tmp_path, env=environment())
    line = one_line_failure(done, 2, "twofold projections status")
    assert "TWOFOLD_EVENT_STORE sqlite:///twofold.db: no file twofold.db here" in line
    assert not list(tmp_path.iterdir()), "a refused command creates no store"


def test_a_store_that_does_not_answer_is_one_line_with_status_1(tmp_path: Path) -> None:
    away = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    env = environment(TWOFOLD_EVENT_STORE=away, TWOFOLD_READ_STORE=away)
    done = run_twofold("projections", "status", cwd=tmp_path, env=env)
    assert "connection" in one_line_failure(done, 1, "twofold projections status").lower()


def test_an_unknown_stream_is_one_line_with_status_1(sqlite_stores: Stores) -> None:
    done = cli(sqlite_stores, "streams", "show", "Order-nope")
    assert "no stream 'Order-nope'" in one_line_failure(done, 1, "twofold streams show")


def test_commands_act_on_a_users_own_service_with_app(sqlite_stores: Stores) -> None:
    app = ("--app", "tests.e2e.bank_api:api")
    status = cli_json(sqlite_stores, "projections", "status", *app, cwd=REPO)
    assert [p["name"] for p in status["projections"]] == ["balances"]
    checked = cli(sqlite_stores, "doctor", *app, cwd=REPO)
    assert "tests.e2e.bank_api:api: 1 projections (balances)" in checked.stdout
    wrong = cli(sqlite_stores, "projections", "status", "--app", "nowhere:service")
    assert "cannot import 'nowhere'" in one_line_failure(wrong, 2, "twofold projections status")


def test_doctor_checks_each_part_one_line_each(tmp_path: Path) -> None:
    sqlite_stores = folder_stores(tmp_path)
    missing = cli(sqlite_stores, "doctor")
    assert missing.returncode == 1 and missing.stderr == ""
    lines = missing.stdout.splitlines()
    assert [line.split(":")[0].split(maxsplit=1) for line in lines] == [
        ["ok", "settings"],
        ["ok", "app"],
        ["FAIL", "event store"],
        ["FAIL", "read store"],
        ["skip", "views"],
        ["skip", "bus"],
        ["skip", "cache"],
    ]
    assert "no file" in lines[2] and "TWOFOLD_EVENT_STORE" in lines[2]

    assert not list(tmp_path.iterdir()), "doctor creates no store"
    asyncio.run(create(sqlite_stores))
    report = cli_json(sqlite_stores, "doctor")
    assert report["ok"] is True
    outcomes = {check["name"]: check["outcome"] for check in report["checks"]}
    assert outcomes == {
        "settings": "ok",
        "app": "ok",
        "event store": "ok",
        "read store": "ok",
        "views": "ok",
        "bus": "skipped",
        "cache": "skipped",
    }
    stores = [c["detail"] for c in report["checks"] if c["name"].endswith("store")]
    assert "answers: head position 0" in stores[0] and "users at 0" in stores[1]

    # Views built from this log, read against another service's log: not this log's.
    asyncio.run(create(sqlite_stores, user=True))
    other = tmp_path / "other"
    other.mkdir()
    theirs = folder_stores(other)
    asyncio.run(create(theirs))
    mixed = cli(sqlite_stores, "doctor", TWOFOLD_EVENT_STORE=theirs.events).stdout.splitlines()
    assert mixed[4].startswith("FAIL views: views that are not this log's:"), mixed
    assert "blog, orders, products, users: they were built from event store" in mixed[4]
    assert "twofold projections rebuild --all" in mixed[4]

    wrong = cli(sqlite_stores, "doctor", "--json", TWOFOLD_LAG_THRESHOLD="soon")
    assert wrong.returncode == 1
    checks = json.loads(wrong.stdout)["checks"]
    assert checks[0]["outcome"] == "failed" and "TWOFOLD_LAG_THRESHOLD" in checks[0]["detail"]
    assert {c["outcome"] for c in checks[2:]} == {"skipped"}


def test_doctor_checks_that_each_broker_accepts_connections(sqlite_stores: Stores) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        answer = asyncio.run(reachable(f"nats://127.0.0.1:{port}"))
        assert answer == f"nats://127.0.0.1:{port} accepts connections"
        up = cli(sqlite_stores, "doctor", TWOFOLD_BUS=f"nats://127.0.0.1:{port}")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"ok   bus: nats://127.0.0.1:{port} accepts connections" in up.stdout
        away = free_port()
        bus = f"nats://127.0.0.1:{port},redis://127.0.0.1:{away}"
        checked = cli(sqlite_stores, "doctor", "--json", TWOFOLD_BUS=bus)
    assert checked.returncode == 1, checked.stderr
    (found,) = [c for c in json.loads(checked.stdout)["checks"] if c["name"] == "bus"]
    assert found["outcome"] == "failed" and "ConnectionRefusedError" in found["detail"]
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(reachable(f"redis://127.0.0.1:{away}"))


def test_the_command_line_never_runs_the_projections(sqlite_stores: Stores) -> None:
    # No server: events wait in the log, and the command line (TWOFOLD_PROJECTIONS unset,
    # so "run" as for a server) only looks; it applies nothing.
    last = append_to(sqlite_stores.events, "Order-o1", poison_order("o1")[:1])
    for _ in range(2):
        status = cli_json(sqlite_stores, "projections", "status")
        assert status["head_position"] == last
        for report in status["projections"]:
            assert (report["status"], report["position"], report["lag_events"]) == (
                "unassigned", 0, last
            ), report  # fmt: skip
