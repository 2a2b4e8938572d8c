"""`twofold serve` as a process: defaults, safety checks, a user's own app."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx

from tests.e2e.processes import REPO, environment, serving, twofold
from tests.e2e.shop_client import created, ok


def test_serve_refuses_a_public_address_without_api_keys(tmp_path: Path) -> None:
    process = twofold("serve", "--host", "0.0.0.0", cwd=tmp_path, env=environment())
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "TWOFOLD_API_KEYS" in output and "--allow-public" in output


def test_serve_refuses_an_address_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        process = twofold(
            "serve", "--workers", "2", "--port", port, cwd=tmp_path, env=environment()
        )
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "cannot listen" in output


def test_serve_refuses_several_workers_on_a_memory_store(tmp_path: Path) -> None:
    env = environment(TWOFOLD_EVENT_STORE="memory://")
    process = twofold("serve", "--workers", "2", cwd=tmp_path, env=env)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "memory://" in output


def test_serve_runs_the_shop_on_sqlite_files_in_the_current_folder(tmp_path: Path) -> None:
    served = serving([], cwd=tmp_path, env=environment())
    with served as (url, output), httpx.Client(base_url=url) as client:
        answer = created(client.post("/api/users", json={"email": "a@example.com", "name": "A"}))
        user = client.get(f"/api/users/{answer['id']}", params={"min_position": answer["position"]})
        assert ok(user)["name"] == "A"
    assert (tmp_path / "twofold.db").exists() and (tmp_path / "twofold-views.db").exists()
    start_line = output[0]
    assert "http://127.0.0.1:" in start_line
    assert "sqlite:///twofold.db" in start_line and "loopback only" in start_line


def test_serve_runs_a_users_own_app_and_factory(tmp_path: Path) -> None:
    env = environment(
        TWOFOLD_EVENT_STORE=f"sqlite:///{tmp_path}/bank.db",
        TWOFOLD_READ_STORE=f"sqlite:///{tmp_path}/bank-views.db",
    )
    for target in ("tests.e2e.bank_api:app", "tests.e2e.bank_api:create_app"):
        with serving([target], cwd=REPO, env=env) as (url, _), httpx.Client(base_url=url) as client:
            opened = created(client.post("/accounts", json={"owner": "ann"}))
            deposit = ok(
                client.post(f"/accounts/{opened['id']}/deposits", json={"amount": "12.50"})
            )
            balance = client.get(
                f"/accounts/{opened['id']}", params={"min_position": deposit["position"]}
            )
            assert ok(balance) == "12.50"  # type: ignore[comparison-overlap]
            assert "/accounts" in ok(client.get("/openapi.json"))["paths"]


def test_worker_refuses_to_run_some_projections_of_a_sqlite_store(tmp_path: Path) -> None:
    process = twofold("worker", "--projection", "orders", cwd=tmp_path, env=environment())
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "one process runs every projection" in output
    assert not list(tmp_path.iterdir()), "a refused worker creates no store"


def test_worker_refuses_views_that_other_processes_cannot_share(tmp_path: Path) -> None:
    env = environment(TWOFOLD_READ_STORE="sqlite://:memory:")
    process = twofold("worker", cwd=tmp_path, env=env)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "sqlite:///file.db or postgresql://" in output and "sqlite://:memory:" in output
    assert not list(tmp_path.iterdir()), "a refused worker creates no store"


def test_serve_refuses_a_bus_it_cannot_use_in_one_line(tmp_path: Path) -> None:
    env = environment(TWOFOLD_BUS="amqp://127.0.0.1:5672")
    process = twofold("serve", cwd=tmp_path, env=env)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert output.count("\n") == 1 and output.startswith("twofold serve: TWOFOLD_BUS")
    assert "unknown scheme 'amqp'" in output and "nats://" in output
    assert not list(tmp_path.iterdir()), "a refused start creates no store"


def test_relay_refuses_to_start_without_a_bus_and_names_each_problem(tmp_path: Path) -> None:
    process = twofold("relay", cwd=tmp_path, env=environment())
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert output.startswith("twofold relay: twofold relay needs TWOFOLD_BUS"), output
    env = environment(TWOFOLD_BUS="nats://b:4222?colour=blue,amqp://b", TWOFOLD_RELAY="run")
    process = twofold("relay", cwd=tmp_path, env=env)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    lines = output.splitlines()
    assert len(lines) == 2 and all(line.startswith("twofold relay: TWOFOLD_BUS") for line in lines)
    assert "colour" in lines[0] and "amqp" in lines[1]
    assert not list(tmp_path.iterdir()), "a refused start creates no store"


def test_serve_logs_json_lines_naming_the_request(tmp_path: Path) -> None:
    env = environment(TWOFOLD_LOG_FORMAT="json")
    with serving(["--access-log"], cwd=tmp_path, env=env) as (url, output):
        answer = httpx.get(f"{url}/api/users/nobody", headers={"X-Request-Id": "trace-me-1"})
        assert answer.headers["x-request-id"] == "trace-me-1"
    lines = [line for line in output[0].splitlines() if line.startswith("{")]
    parsed = [json.loads(line) for line in lines]
    assert parsed and all({"time", "level", "logger", "message"} <= p.keys() for p in parsed)
    mine = [p for p in parsed if p["request_id"] == "trace-me-1"]
    assert mine and mine[0]["correlation_id"] == "trace-me-1", parsed
    assert "/api/users/nobody" in mine[0]["message"]
