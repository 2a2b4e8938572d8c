"""``twofold serve``: run an HttpApi (default: the reference shop) under uvicorn.

With several workers every process appends to the same store and one of them runs the
projections (see ``twofold.adapters.sqlite.coordination``). Without API keys the server listens on
loopback only, unless ``--allow-public`` says that an open write API is intended.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twofold.bootstrap import check_settings
from twofold.errors import ConfigurationError
from twofold.logs import log_config
from twofold.settings import Settings

__all__ = ["add_serve_command", "check_serving", "serve"]


def add_serve_command(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="serve the HTTP API",
        description="Serve an HttpApi over HTTP. Stores, projections and API keys come from "
        "the TWOFOLD_* environment variables (see twofold.settings).",
    )
    parser.add_argument(
        "app",
        nargs="?",
        default=None,
        help="module:attribute of an HttpApi, an ASGI app, or a factory of either "
        "(default: the reference shop)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (8000)")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the stores (1)"
    )
    parser.add_argument(
        "--allow-public",
        action="store_true",
        help="listen on a non-loopback address although no TWOFOLD_API_KEYS are configured",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (off: it costs throughput)"
    )
    parser.set_defaults(run=serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_serving(settings: Settings, *, host: str, workers: int, allow_public: bool) -> list[str]:
    """Why this configuration must not start (empty: it may)."""
    problems: list[str] = []
    if not settings.api_keys and not is_loopback(host) and not allow_public:
        problems.append(
            f"refusing to listen on {host} without API keys: anyone who reaches it could "
            "record commands. Set TWOFOLD_API_KEYS (name:secret=commands+queries,...), bind "
            "127.0.0.1, or pass --allow-public if an open API is intended"
        )
    if workers < 1:
        problems.append("--workers must be 1 or more")
    if workers > 1 and settings.event_store.startswith("memory:"):
        problems.append(
            "several workers cannot share a memory:// event store: each would have its own; "
            "use sqlite:///file.db or postgresql://"
        )
    if workers > 1 and settings.read_store.startswith("sqlite://:memory:"):
        problems.append("several workers cannot share views kept in memory; use a file")
    return problems


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from twofold.cli.workers import bind, run_workers
    from twofold.http.serve import DEFAULT_APP, load_target, resolve

    spec: str = args.app or os.environ.get("TWOFOLD_APP") or DEFAULT_APP
    # Worker processes import the app themselves; they must find the user's modules as
    # this process does (multiprocessing hands its sys.path on to them).
    sys.path.insert(0, os.getcwd())
    try:
        settings = Settings.from_env()
        problems = check_serving(
            settings, host=args.host, workers=args.workers, allow_public=args.allow_public
        )
        if args.workers > 1 and args.port == 0:
            problems.append("--port 0 picks a port per process; give one port to share")
        if not problems:
            check_settings(settings)  # the stores', the bus's and the cache's, one line each
            resolve(load_target(spec), spec)  # fail here, once, rather than in each worker
            bind(args.host, args.port, reuse_port=False).close()  # the address is free
    except OSError as error:
        problems = [f"cannot listen on {args.host}:{args.port}: {error}"]
    except ConfigurationError as error:
        problems = str(error).splitlines()
    if problems:
        for problem in problems:
            print(f"twofold serve: {problem}", file=sys.stderr)
        return 2
    print(describe(settings, spec=spec, host=args.host, port=args.port, workers=args.workers))
    os.environ["TWOFOLD_APP"] = spec
    options: dict[str, Any] = {
        "loop": "uvloop",
        "http": "twofold.http.protocol:ProblemHttpToolsProtocol",
        "lifespan": "on",
        "log_level": args.log_level,
        "log_config": log_config(settings.log_format, args.log_level),
        "access_log": args.access_log,
        "server_header": False,
    }
    if args.workers == 1:
        uvicorn.run("twofold.http.serve:app_factory", factory=True, host=args.host,
                    port=args.port, **options)  # fmt: skip
        return 0
    try:
        return run_workers(args.workers, args.host, args.port, options)
    except OSError as error:
        print(f"twofold serve: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1


def describe(settings: Settings, *, spec: str, host: str, port: int, workers: int) -> str:
    """The start line: where it listens, which stores, who runs projections, auth."""
    shown = f"[{host}]" if ":" in host else host
    plural = "s" if workers > 1 else ""
    projections = (
        "run in one worker process" if settings.projections == "run" else "off (run elsewhere)"
    )
    if settings.api_keys:
        auth = f"on ({len(settings.api_keys)} API key{'s' if len(settings.api_keys) > 1 else ''})"
    elif is_loopback(host):
        auth = "off (no TWOFOLD_API_KEYS): listening on loopback only"
    else:
        auth = "OFF (no TWOFOLD_API_KEYS) on a public address (--allow-public)"
    relay = ""
    if settings.bus_urls:
        where = "run in one worker process" if settings.relay == "run" else "off (twofold relay)"
        relay = f"; relay to {', '.join(map(redact, settings.bus_urls))} {where}"
    cache = ""
    if settings.cache is not None:
        local = f" + {settings.cache_local} in each process" if settings.cache_local else ""
        cache = f", cache {redact(settings.cache)}{local}"
    return (
        f"twofold: serving {spec} on http://{shown}:{port} with {workers} worker{plural}; "
        f"events {redact(settings.event_store)}, views {redact(settings.read_store)}{cache}; "
        f"projections {projections}{relay}; auth {auth}"
    )


def redact(url: str) -> str:
    """The URL without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
