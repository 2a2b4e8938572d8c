"""The HTTP benchmark (issue 3): the shop under `twofold serve`, against a bare Starlette route.

Both servers run the same way, under ``twofold serve --workers 2`` (the production setup the
README documents: uvicorn, uvloop, httptools, one listening socket per worker, access log
off). The load generator is wrk on loopback. The
bare Starlette app answers the very JSON body twofold answers, as a constant: the ceiling
of any Python framework on this ASGI server and machine.

For POST there is a second reference, ``bare_durable``: the same bare route, but it parses
the body and stores it with one SQLite INSERT and commit per request (WAL,
``synchronous=FULL``, the durability of twofold's event store), through Starlette's thread
pool: the raw limit of a route that must write durably before it answers. It is no target;
it says how much of the gap to the constant route any durable write costs.

    .venv/bin/python bench/bench_http.py                 # 3 rounds x 10 s per figure
    .venv/bin/python bench/bench_http.py --quick         # one short round

Output: one JSON object per line (``target``, ``route``, ``rps``, ``p50_ms``, ``p99_ms``,
medians over rounds), then the ratios against the bare route. Targets (issue 3): GET
/api/orders/{id} >= 70% of bare and >= 10,000 rps; POST /api/orders >= 50% of bare.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REPO = Path(__file__).resolve().parents[1]
SEEDED_ORDERS = 200

# -- the ceiling: a bare Starlette app answering constants -------------------------------------

_ORDER = b""  # filled from the real answer before the bare server starts (see main)
_ACCEPTED = b'{"id":"01934c1e-0000-7000-8000-000000000000","version":1,"position":1}'


async def _bare_get(request: Request) -> Response:
    return Response(_ORDER, media_type="application/json")


async def _bare_post(request: Request) -> Response:
    await request.body()
    return Response(_ACCEPTED, status_code=201, media_type="application/json")


_DURABLE: list[sqlite3.Connection] = []  # this worker's connection
_ONE_WRITER = threading.Lock()  # SQLite writes one at a time: queue here, not in its busy loop


def _store_durably(body: bytes) -> None:
    """One INSERT, one commit (fsync), on this worker's connection."""
    with _ONE_WRITER:
        if not _DURABLE:
            conn = sqlite3.connect(
                os.environ["BENCH_DURABLE_DB"],
                isolation_level=None,
                timeout=30,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            _DURABLE.append(conn)
        conn = _DURABLE[0]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO orders (id, body) VALUES (?, ?)", (uuid.uuid4().hex, body))
        conn.execute("COMMIT")


async def _bare_durable_post(request: Request) -> Response:
    body = await request.body()
    json.loads(body)
    await run_in_threadpool(_store_durably, body)
    return Response(_ACCEPTED, status_code=201, media_type="application/json")


def bare_durable_app() -> Starlette:
    with sqlite3.connect(os.environ["BENCH_DURABLE_DB"], timeout=30) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, body BLOB)")
    conn.close()
    return Starlette(routes=[Route("/api/orders", _bare_durable_post, methods=["POST"])])


def bare_app() -> Starlette:
    global _ORDER
    _ORDER = Path(os.environ["BENCH_ORDER_BODY"]).read_bytes()
    return Starlette(
        routes=[
            Route("/api/orders/{order_id}", _bare_get, methods=["GET"]),
            Route("/api/orders", _bare_post, methods=["POST"]),
        ]
    )


# -- running servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(command: list[str], *, env: dict[str, str], cwd: Path, port: int) -> Iterator[str]:
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health")
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start: {' '.join(command)}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


# -- load ---------------------------------------------------------------------------------

_GET_LUA = """
local ids = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/orders/" .. ids[(n %% #ids) + 1])
end
"""

_POST_LUA = """
wrk.method = "POST"
wrk.path = "/api/orders"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
"""

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, script: Path, *, seconds: int, connections: int) -> dict[str, float]:
    output = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {
        int(p): float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise SystemExit(f"{errors.group(1)} failed requests against {url}:\n{output}")
    return {"rps": rps, "p50_ms": latency[50], "p99_ms": latency[99]}


def settle(url: str) -> float:
    """Wait until the projections have applied every event: a measurement must not pay for
    the catching up left over from the one before it. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() < started + 300:
        health = httpx.get(f"{url}/health").json()
        if all(p["lag_events"] == 0 for p in health["projections"]):
            return round(time.monotonic() - started, 2)
        time.sleep(0.05)
    raise SystemExit("the projections did not catch up within 300 s")


# -- the run ------------------------------------------------------------------------------


def seed(url: str) -> tuple[list[str], bytes, bytes]:
    """A customer, a product and some orders; returns the order ids, one order's answer, and
    an order creation body."""
    with httpx.Client(base_url=url) as client:
        client.post("/api/users", json={"user_id": "bench", "email": "b@x.io", "name": "Bench"})
        client.post("/api/products", json={"product_id": "pen", "name": "Pen", "price": "2.50"})
        body = {
            "customer_id": "bench",
            "items": [{"product_id": "pen", "quantity": 2, "price": "2.50"}],
        }
        ids, position = [], 0
        for _ in range(SEEDED_ORDERS):
            answer = client.post("/api/orders", json=body).json()
            ids.append(answer["id"])
            position = answer["position"]
        order = client.get(f"/api/orders/{ids[0]}", params={"min_position": position})
        order.raise_for_status()
        return ids, order.content, json.dumps(body, separators=(",", ":")).encode()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="twofold-bench-http-"))
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    parser.add_argument("--only", choices=["GET", "POST"], help="measure one route only")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOFOLD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    env["TWOFOLD_EVENT_STORE"] = f"sqlite:///{work}/events.db"
    env["TWOFOLD_READ_STORE"] = f"sqlite:///{work}/views.db"
    workers = str(args.workers)
    twofold = [sys.executable, "-m", "twofold.cli.main", "serve", "--workers", workers]
    shop_port, bare_port = free_port(), free_port()
    with ExitStack() as stack:
        shop = stack.enter_context(
            server([*twofold, "--port", str(shop_port)], env=env, cwd=work, port=shop_port)
        )
        ids, order_body, create_body = seed(shop)
        get_lua = work / "get.lua"
        get_lua.write_text(_GET_LUA % ", ".join(f'"{i}"' for i in ids))
        post_lua = work / "post.lua"
        post_lua.write_text(_POST_LUA % create_body.decode())
        (work / "order.json").write_bytes(order_body)
        env["BENCH_ORDER_BODY"] = str(work / "order.json")
        # The ceiling runs under the very same server: `twofold serve` serves any ASGI app.
        bare_command = [*twofold, "bench.bench_http:bare_app", "--port", str(bare_port)]
        bare = stack.enter_context(server(bare_command, env=env, cwd=REPO, port=bare_port))
        env["BENCH_DURABLE_DB"] = str(work / "durable.db")
        durable_port = free_port()
        durable_command = [
            *twofold,
            "bench.bench_http:bare_durable_app",
            "--port",
            str(durable_port),
        ]
        durable = stack.enter_context(server(durable_command, env=env, cwd=REPO, port=durable_port))
        scripts = {"GET": get_lua, "POST": post_lua}
        if args.only:
            scripts = {args.only: scripts[args.only]}
        targets = {"twofold": shop, "bare": bare, "bare_durable": durable}
        measured_for = {"GET": ("twofold", "bare"), "POST": ("twofold", "bare", "bare_durable")}
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        load = {"seconds": args.seconds, "connections": args.connections}
        for (target, url), (method, script) in itertools.product(targets.items(), scripts.items()):
            if target in measured_for[method]:
                wrk(url, script, seconds=2, connections=args.connections)  # warm up
        # Rounds interleave the targets, so drift in a shared machine's load hits both.
        for _ in range(args.rounds):
            for method, script in scripts.items():
                for target, url in targets.items():
                    if target not in measured_for[method]:
                        continue
                    settle(shop)
                    figure = wrk(url, script, **load)
                    if target == "twofold" and method == "POST":
                        # How far the projections fell behind the appends: seconds to catch up.
                        figure["catch_up_s"] = settle(shop)
                    runs.setdefault((target, method), []).append(figure)

    routes = {"GET": "GET /api/orders/{id}", "POST": "POST /api/orders"}
    for (target, method), measured in runs.items():
        median = {key: round(statistics.median(r[key] for r in measured), 3) for key in measured[0]}
        line = {"target": target, "route": routes[method], "workers": args.workers, **median}
        print(json.dumps({**line, "runs": measured}))
    for method, target_ratio in (("GET", 0.70), ("POST", 0.50)):
        if method not in scripts:
            continue
        ratios = [
            mine["rps"] / ceiling["rps"]
            for mine, ceiling in zip(runs["twofold", method], runs["bare", method], strict=True)
        ]
        ratio = statistics.median(ratios)
        print(
            json.dumps(
                {
                    "ratio": routes[method],
                    "twofold_vs_bare": round(ratio, 3),
                    "per_round": [round(r, 3) for r in ratios],
                    "target": target_ratio,
                    "met": ratio >= target_ratio,
                }
            )
        )
    if "POST" in scripts:
        # No target: how the durable references compare, in the same rounds.
        for mine, theirs in (("twofold", "bare_durable"), ("bare_durable", "bare")):
            ratios = [
                a["rps"] / b["rps"]
                for a, b in zip(runs[mine, "POST"], runs[theirs, "POST"], strict=True)
            ]
            print(
                json.dumps(
                    {
                        "ratio": f"POST /api/orders, {mine} / {theirs}",
                        "value": round(statistics.median(ratios), 3),
                        "per_round": [round(r, 3) for r in ratios],
                    }
                )
            )


if __name__ == "__main__":
    main()
