"""What measuring costs a request: the shop's ASGI app with its metrics, and without.

Each variant runs in a process of its own (prometheus_client picks its mode at import):

- ``measured``: as ``twofold serve --workers N`` runs it, Prometheus metrics in
  multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set to a fresh directory);
- ``unmeasured``: the same app with ``NoMetrics`` (records nothing): the raw limit.

Both serve ``GET /api/orders/{id}`` and ``POST /api/users`` straight through the ASGI app
(no sockets: only twofold's own cost), a few thousand times per round; the figure is the
process's CPU time per request (``time.process_time``), the best of the rounds, taking
turns so that both see the same machine.

    .venv/bin/python bench/bench_metrics.py            # 5 rounds per variant and route
    .venv/bin/python bench/bench_metrics.py --quick

Output: one JSON object per line (``variant``, ``route``, ``cpu_us``, ``runs``), then the
ratio measured / unmeasured per route.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


async def _call(app: Any, method: str, path: str, body: bytes = b"", query: bytes = b"") -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json")] if body else []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "root_path": "",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
        "state": {},
    }
    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


async def _measure(variant: str, requests: int, work: Path) -> dict[str, float]:
    """In this process: build the app as ``variant`` says; CPU µs per request per route."""
    import twofold.bootstrap.app  # noqa: F401  (the module whose bootstrap() opens the metrics)

    if variant == "unmeasured":
        from twofold.application.metrics import NoMetrics

        sys.modules["twofold.bootstrap.app"].open_metrics = NoMetrics  # type: ignore[attr-defined]
    from twofold import Settings
    from twofold.examples.shop.http import api

    settings = Settings(
        event_store=f"sqlite:///{work}/events.db", read_store=f"sqlite:///{work}/views.db"
    )
    app = api.asgi(settings)
    figures: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        user = json.dumps({"user_id": "u1", "email": "u1@x.io", "name": "Ann"}).encode()
        assert await _call(app, "POST", "/api/users", user) == 201
        product = json.dumps({"product_id": "p1", "name": "Pen", "price": "2.50"}).encode()
        assert await _call(app, "POST", "/api/products", product) == 201
        line = {"product_id": "p1", "quantity": 2, "price": "2.50"}
        order = json.dumps({"order_id": "o1", "customer_id": "u1", "items": [line]}).encode()
        assert await _call(app, "POST", "/api/orders", order) == 201
        # Read-your-writes: wait (once) for the projection to apply the order.
        assert await _call(app, "GET", "/api/orders/o1", query=b"min_position=3") == 200
        started = time.process_time()
        for _ in range(requests):
            assert await _call(app, "GET", "/api/orders/o1") == 200
        figures["GET /api/orders/{id}"] = (time.process_time() - started) / requests * 1e6
        posts = max(1, requests // 10)  # each is a durable append: fewer of them
        started = time.process_time()
        for n in range(posts):
            body = json.dumps({"user_id": f"b{n}", "email": f"b{n}@x.io", "name": "B"}).encode()
            assert await _call(app, "POST", "/api/users", body) == 201
        figures["POST /api/users"] = (time.process_time() - started) / posts * 1e6
    return figures


def _run_variant(variant: str, requests: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="twofold-bench-metrics-") as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWOFOLD_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if variant == "measured":
            shared = Path(work) / "metrics"
            shared.mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
        out = subprocess.run(
            [sys.executable, __file__, "--child", variant, "--requests", str(requests), work],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=["measured", "unmeasured"], help=argparse.SUPPRESS)
    parser.add_argument("work", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_measure(args.child, args.requests, Path(args.work)))))
        return
    rounds, requests = (1, 1000) if args.quick else (args.rounds, args.requests)
    runs: dict[str, dict[str, list[float]]] = {"measured": {}, "unmeasured": {}}
    for _ in range(rounds):
        for variant in ("unmeasured", "measured"):  # taking turns
            for route, cpu in _run_variant(variant, requests).items():
                runs[variant].setdefault(route, []).append(cpu)
    best: dict[tuple[str, str], float] = {}
    for variant, routes in runs.items():
        for route, values in routes.items():
            best[variant, route] = min(values)
            print(
                json.dumps(
                    {
                        "variant": variant,
                        "route": route,
                        "cpu_us": round(min(values), 1),
                        "median_us": round(statistics.median(values), 1),
                        "runs": [round(v, 1) for v in values],
                    }
                )
            )
    for route in runs["measured"]:
        measured, unmeasured = best["measured", route], best["unmeasured", route]
        print(
            json.dumps(
                {
                    "ratio": route,
                    "measured_vs_unmeasured": round(measured / unmeasured, 3),
                    "added_us": round(measured - unmeasured, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
