"""The cache benchmark (issue 14): seed 002's read path, measured side by side in one run.

``GET /api/posts/{id}`` for a post with its author and 20 comments (documents of about
5 KB), answered by:

- ``join``: a route over a normalized PostgreSQL schema (users, posts, comments) running
  seed 002's three-table JOIN and building the same JSON (checked equal at start), a bare
  Starlette app of this script (``target_app``) served by ``twofold serve``;
- ``sqlite``, ``postgres``: the reference shop as users run it, ``twofold serve --workers
  2`` with ``TWOFOLD_READ_STORE`` naming the read store, no cache;
- ``…+redis``: the same with ``TWOFOLD_CACHE=redis://…`` (the wiring of ``bootstrap``);
- ``…+redis+local``: with ``TWOFOLD_CACHE_LOCAL=1000`` as well (the in-process cache).

Every server runs 2 workers (uvicorn, uvloop, httptools) like ``bench_http.py``. wrk on
loopback at 32 connections; rounds interleave the targets. Also, in one process and one
client, the latency of one read through each path (``inproc``: ``App.ask`` of an App that
``bootstrap`` built from the same settings, or the JOIN route's handler).

    .venv/bin/python bench/bench_cache.py                  # 3 rounds x 10 s per target
    .venv/bin/python bench/bench_cache.py --quick          # one round of 3 s

Environment: ``TWOFOLD_BENCH_POSTGRES_URL`` (default the local ``test`` database),
``TWOFOLD_BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/0; keys under a namespace of
the run's own, deleted at the end).

Targets (issue 14): twofold with the cache at least 10,000 requests/s, and ahead of the
JOIN route. The output says what the ratios are on this machine, whatever they are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_http import free_port, server, wrk  # noqa: E402

from twofold import App, Settings, bootstrap  # noqa: E402
from twofold.adapters.postgres._pool import ConnectionPool  # noqa: E402
from twofold.codec import decode_json, encode_json  # noqa: E402
from twofold.examples import shop  # noqa: E402
from twofold.examples.shop import AddComment, CreatePost, CreateUser, GetPost  # noqa: E402

POSTS = 200
COMMENTS = 20
USERS = 21
TARGETS = (
    "join",
    "postgres",
    "postgres+redis",
    "postgres+redis+local",
    "sqlite",
    "sqlite+redis",
    "sqlite+redis+local",
)

# -- the targets ----------------------------------------------------------------------------

_JOIN = """
SELECT p.id, p.title, p.body, p.created_at, p.updated_at, p.version,
       u.id AS author_id, u.name AS author_name,
       c.id AS comment_id, c.text, c.created_at AS commented_at,
       cu.id AS commenter_id, cu.name AS commenter_name
FROM {s}.posts p
JOIN {s}.users u ON p.user_id = u.id
LEFT JOIN {s}.comments c ON c.post_id = p.id
LEFT JOIN {s}.users cu ON c.user_id = cu.id
WHERE p.id = %s
ORDER BY c.position
"""


def _joined(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The answer seed 002's JOIN rows describe, shaped as twofold's PostView."""
    first = rows[0]
    comments = [
        {
            "comment_id": r[8],
            "text": r[9],
            "author": {"user_id": r[11], "name": r[12]},
            "created_at": r[10],
        }
        for r in rows
        if r[8] is not None
    ]
    return {
        "post_id": first[0],
        "title": first[1],
        "body": first[2],
        "author": {"user_id": first[6], "name": first[7]},
        "comments": comments,
        "comment_count": len(comments),
        "created_at": first[3],
        "updated_at": first[4],
        "version": first[5],
    }


class JoinRoute:
    def __init__(self, url: str, schema: str) -> None:
        self.pool = ConnectionPool(url, size=4)
        self.query = _JOIN.format(s=f'"{schema}"')

    async def answer(self, post_id: str) -> bytes | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(self.query, (post_id,), prepare=True)
            rows = await cursor.fetchall()
        return encode_json(_joined(rows)) if rows else None

    async def close(self) -> None:
        await self.pool.close()


def target_settings(target: str, *, projections: str = "run") -> dict[str, str]:
    """The ``TWOFOLD_*`` environment of a twofold target (``sqlite+redis+local``, ...)."""
    env = os.environ
    kind, *layers = target.split("+")
    views = (
        f"sqlite:///{env['BENCH_SQLITE_VIEWS']}" if kind == "sqlite" else env["BENCH_PG_VIEWS_URL"]
    )
    settings = {
        "TWOFOLD_EVENT_STORE": f"sqlite:///{env['BENCH_SQLITE_EVENTS']}",
        "TWOFOLD_READ_STORE": views,
        "TWOFOLD_PROJECTIONS": projections,
    }
    if "redis" in layers:
        # A namespace per target: each measures its own cache, from cold.
        namespace = f"{env['BENCH_NAMESPACE']}-{target.replace('+', '-')}"
        settings["TWOFOLD_CACHE"] = f"{env['BENCH_REDIS_URL']}?namespace={namespace}"
    if "local" in layers:
        settings["TWOFOLD_CACHE_LOCAL"] = "1000"
    return settings


class AppRoute:
    """The shop's GetPost asked of an App that bootstrap built for a target."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def answer(self, post_id: str) -> bytes | None:
        post = await self.app.ask(GetPost(post_id=post_id))
        return None if post is None else encode_json(post)

    async def close(self) -> None:
        if self.app.cache is not None:
            sys.stderr.write(f"    cache counters: {self.app.cache.metrics.as_dict()}\n")
        await self.app.close()


async def open_route(target: str) -> JoinRoute | AppRoute:
    env = os.environ
    if target == "join":
        return JoinRoute(env["BENCH_PG_URL"], env["BENCH_JOIN_SCHEMA"])
    settings = Settings.from_env(target_settings(target, projections="off"))
    app = await bootstrap(shop.SERVICE, settings)
    await app.start()
    return AppRoute(app)


def target_app() -> Starlette:
    """The JOIN route's app, for ``twofold serve``."""
    routes: list[JoinRoute | AppRoute] = []

    async def get_post(request: Request) -> Response:
        body = await routes[0].answer(request.path_params["post_id"])
        if body is None:
            return Response(b'{"detail":"no such post"}', 404, media_type="application/json")
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        routes.append(await open_route("join"))
        try:
            yield
        finally:
            await routes[0].close()

    return Starlette(
        routes=[Route("/api/posts/{post_id}", get_post), Route("/health", health)],
        lifespan=lifespan,
    )


# -- seeding ------------------------------------------------------------------------------


def _text(seed: int, size: int) -> str:
    words = ("event", "view", "fold", "cache", "position", "stream", "query", "command")
    out: list[str] = []
    i = seed
    while sum(len(w) + 1 for w in out) < size:
        out.append(words[i % len(words)])
        i = i * 7 + 3
    return " ".join(out)[:size]


async def seed_twofold(work: Path, pg_views_url: str) -> None:
    """Users, posts and comments through the shop's commands; both read stores filled by
    the blog projection (the PostgreSQL one replays the same log)."""
    events = f"sqlite:///{work}/events.db"
    app = await bootstrap(
        shop.SERVICE, Settings(event_store=events, read_store=f"sqlite:///{work}/views.db")
    )
    async with app:
        for u in range(USERS):
            await app.dispatch(
                CreateUser(user_id=f"u-{u:02d}", email=f"u{u}@example.com", name=f"User {u:02d}")
            )
        for p in range(POSTS):
            post_id = f"p-{p:04d}"
            await app.dispatch(
                CreatePost(
                    post_id=post_id,
                    author_id=f"u-{p % USERS:02d}",
                    title=_text(p, 48),
                    body=_text(p + 1, 400),
                )
            )
            for c in range(COMMENTS):
                await app.dispatch(
                    AddComment(
                        post_id=post_id,
                        comment_id=f"c-{p:04d}-{c:02d}",
                        author_id=f"u-{(p + c + 1) % USERS:02d}",
                        text=_text(p * COMMENTS + c, 120),
                    )
                )
        await app.wait_for_projections(timeout=600)
    app = await bootstrap(shop.SERVICE, Settings(event_store=events, read_store=pg_views_url))
    async with app:
        await app.wait_for_projections(timeout=600)


def seed_join(work: Path, url: str, schema: str) -> None:
    """The normalized schema, filled with exactly what the post documents hold."""
    import sqlite3

    rows = sqlite3.connect(work / "views.db").execute("SELECT doc FROM v_posts").fetchall()
    posts = [decode_json(bytes(r[0])) for r in rows]
    with psycopg.connect(url, autocommit=True) as conn:
        s = f'"{schema}"'
        conn.execute(f"CREATE SCHEMA {s}")
        conn.execute(f"CREATE TABLE {s}.users (id text PRIMARY KEY, name text NOT NULL)")
        conn.execute(
            f"CREATE TABLE {s}.posts (id text PRIMARY KEY, user_id text NOT NULL "
            f"REFERENCES {s}.users, title text, body text, created_at timestamptz, "
            "updated_at timestamptz, version int)"
        )
        conn.execute(
            f"CREATE TABLE {s}.comments (id text PRIMARY KEY, post_id text NOT NULL "
            f"REFERENCES {s}.posts, user_id text NOT NULL REFERENCES {s}.users, position int, "
            "text text, created_at timestamptz)"
        )
        conn.execute(f"CREATE INDEX ON {s}.comments (post_id, position)")
        users = {p["author"]["user_id"]: p["author"]["name"] for p in posts}
        for p in posts:
            users.update({c["author"]["user_id"]: c["author"]["name"] for c in p["comments"]})
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {s}.users VALUES (%s, %s)", sorted(users.items()))
            cur.executemany(
                f"INSERT INTO {s}.posts VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        p["post_id"],
                        p["author"]["user_id"],
                        p["title"],
                        p["body"],
                        p["created_at"],
                        p["updated_at"],
                        p["version"],
                    )
                    for p in posts
                ],
            )
            cur.executemany(
                f"INSERT INTO {s}.comments VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (
                        c["comment_id"],
                        p["post_id"],
                        c["author"]["user_id"],
                        i,
                        c["text"],
                        c["created_at"],
                    )
                    for p in posts
                    for i, c in enumerate(p["comments"])
                ],
            )
        conn.execute(f"ANALYZE {s}.users")
        conn.execute(f"ANALYZE {s}.posts")
        conn.execute(f"ANALYZE {s}.comments")


# -- in process ---------------------------------------------------------------------------


async def inproc_latency(target: str, ids: list[str], reads: int) -> dict[str, float]:
    """One client, one process: microseconds per read (after one warm pass)."""
    route = await open_route(target)
    try:
        for post_id in ids:
            await route.answer(post_id)
        samples = []
        for i in range(reads):
            started = time.perf_counter()
            await route.answer(ids[i % len(ids)])
            samples.append((time.perf_counter() - started) * 1e6)
    finally:
        await route.close()
    samples.sort()
    return {
        "p50_us": round(samples[len(samples) // 2], 1),
        "p99_us": round(samples[int(len(samples) * 0.99)], 1),
    }


# -- the run ------------------------------------------------------------------------------

_GET_LUA = """
local ids = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/posts/" .. ids[(n %% #ids) + 1])
end
"""


def admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    parser.add_argument("--only", nargs="+", choices=TARGETS, help="measure these targets")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    pg_url = os.environ.get(
        "TWOFOLD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    redis_url = os.environ.get("TWOFOLD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    run_id = uuid.uuid4().hex[:8]
    views_schema, join_schema = f"bench_cache_views_{run_id}", f"bench_cache_join_{run_id}"
    namespace = f"bench{run_id}"
    work = Path(tempfile.mkdtemp(prefix="twofold-bench-cache-"))
    try:
        run(args, work, pg_url, redis_url, views_schema, join_schema, namespace)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for schema in (views_schema, join_schema):
            admin(pg_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        with redis.Redis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=f"{{{namespace}*", count=1000))
            if keys:
                client.delete(*keys)


def run(
    args: argparse.Namespace,
    work: Path,
    pg_url: str,
    redis_url: str,
    views_schema: str,
    join_schema: str,
    namespace: str,
) -> None:
    sep = "&" if "?" in pg_url else "?"
    pg_views_url = f"{pg_url}{sep}schema={views_schema}"
    sys.stderr.write("seeding the shop's blog (commands, projections) ...\n")
    asyncio.run(seed_twofold(work, pg_views_url))
    seed_join(work, pg_url, join_schema)
    ids = [f"p-{p:04d}" for p in range(POSTS)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOFOLD_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]),
        BENCH_PG_URL=pg_url,
        BENCH_JOIN_SCHEMA=join_schema,
        BENCH_SQLITE_VIEWS=str(work / "views.db"),
        BENCH_SQLITE_EVENTS=str(work / "events.db"),
        BENCH_PG_VIEWS_URL=pg_views_url,
        BENCH_REDIS_URL=redis_url,
        BENCH_NAMESPACE=namespace,
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith("BENCH_")})
    targets = list(args.only or TARGETS)
    load_at_start = os.getloadavg()

    inproc: dict[str, dict[str, float]] = {}
    for target in targets:
        inproc[target] = asyncio.run(inproc_latency(target, ids, 2000))
        sys.stderr.write(f"  in-process {target}: {inproc[target]}\n")

    get_lua = work / "get.lua"
    get_lua.write_text(_GET_LUA % ", ".join(f'"{i}"' for i in ids))
    twofold = [sys.executable, "-m", "twofold.cli.main", "serve", "--workers", str(args.workers)]
    runs: dict[str, list[dict[str, float]]] = {}
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for target in targets:
            port = free_port()
            if target == "join":
                command = [*twofold, "bench.bench_cache:target_app", "--port", str(port)]
                served = env
            else:  # the reference shop, configured as its users configure it
                command = [*twofold, "--port", str(port)]
                served = {**env, **target_settings(target)}
            urls[target] = stack.enter_context(server(command, env=served, cwd=work, port=port))
        answers = {t: httpx.get(f"{u}/api/posts/{ids[7]}").json() for t, u in urls.items()}
        reference = next(iter(answers.values()))
        for target, answer in answers.items():
            if answer != reference:
                raise SystemExit(f"{target} answers differently:\n{answer}\n{reference}")
        size = len(httpx.get(f"{next(iter(urls.values()))}/api/posts/{ids[7]}").content)
        sys.stderr.write(f"every target answers the same {size}-byte post; warming up ...\n")
        for url in urls.values():
            wrk(url, get_lua, seconds=2, connections=args.connections)
        for _ in range(args.rounds):  # rounds interleave the targets: drift hits them all
            for target, url in urls.items():
                figure = wrk(url, get_lua, seconds=args.seconds, connections=args.connections)
                sys.stderr.write(f"  {target}: {figure}\n")
                runs.setdefault(target, []).append(figure)

    medians = {
        t: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
        for t, rs in runs.items()
    }
    # Other work on the machine moves every figure: say how busy it was.
    print(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in load_at_start],
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                }
            }
        )
    )
    route = "GET /api/posts/{id}"
    for target, median in medians.items():
        line = {"target": target, "route": route, "workers": args.workers, "doc_bytes": size}
        print(json.dumps({**line, **median, "inproc": inproc[target], "runs": runs[target]}))
    for target in targets:
        base = target.split("+")[0]
        ratios = {}
        if "join" in medians and target != "join":
            ratios["vs_join"] = round(medians[target]["rps"] / medians["join"]["rps"], 3)
        if target != base and base in medians:
            ratios[f"vs_{base}"] = round(medians[target]["rps"] / medians[base]["rps"], 3)
        if ratios:
            print(json.dumps({"ratio": target, **ratios}))
    cached = [t for t in medians if "+redis" in t]
    for target in cached:
        rps = medians[target]["rps"]
        ahead = "join" in medians and rps > medians["join"]["rps"]
        print(
            json.dumps(
                {
                    "target_check": target,
                    "rps": rps,
                    "at_least_10000": rps >= 10_000,
                    "ahead_of_join": ahead,
                }
            )
        )


if __name__ == "__main__":
    main()
