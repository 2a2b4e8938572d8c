"""``twofold serve``: run an HttpApi (default: the reference shop) under uvicorn.

With several workers every process appends to the same store and one of them runs the
projections (see ``twofold.adapters.sqlite.coordination``). Without API keys the server listens on
loopback only, unless ``--allow-public`` says that an open write API is intended.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from twofold.bootstrap import check_settings
from twofold.errors import ConfigurationError
from twofold.logs import log_config
from twofold.settings import Settings

__all__ = ["check_serving", "serve", "serve_app"]


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@click.command(
    "serve",
    short_help="Serve the HTTP API.",
    context_settings={"show_default": True},
)
@click.argument("app", required=False)
@click.option("--host", default="127.0.0.1", help="Address to bind.")
@click.option("--port", type=int, default=8000, help="Port to bind.")
@click.option("--workers", type=int, default=1, help="Worker processes sharing the stores.")
@click.option(
    "--allow-public",
    is_flag=True,
    help="Listen on a non-loopback address although no TWOFOLD_API_KEYS are configured.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info")
@click.option("--access-log", is_flag=True, help="Log every request (off: it costs throughput).")
def serve(
    app: str | None,
    host: str,
    port: int,
    workers: int,
    allow_public: bool,
    log_level: str,
    access_log: bool,
) -> int:
    """Serve an HttpApi over HTTP.

    APP is module:attribute of an HttpApi, an ASGI app, or a factory of either (default:
    TWOFOLD_APP, else the reference shop). Stores, projections and API keys come from the
    TWOFOLD_* environment variables (see twofold.settings).
    """
    return serve_app(
        app,
        host=host,
        port=port,
        workers=workers,
        allow_public=allow_public,
        log_level=log_level,
        access_log=access_log,
    )


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


def serve_app(
    app: str | None,
    *,
    host: str,
    port: int,
    workers: int,
    allow_public: bool,
    log_level: str,
    access_log: bool,
) -> int:
    """Check the configuration, print the start line, and serve until stopped."""
    import uvicorn

    from twofold.cli.workers import bind, run_workers
    from twofold.http.serve import DEFAULT_APP, load_target, resolve

    spec: str = app or os.environ.get("TWOFOLD_APP") or DEFAULT_APP
    # Worker processes import the app themselves; they must find the user's modules as
    # this process does (multiprocessing hands its sys.path on to them).
    sys.path.insert(0, os.getcwd())
    try:
        settings = Settings.from_env()
        problems = check_serving(settings, host=host, workers=workers, allow_public=allow_public)
        if workers > 1 and port == 0:
            problems.append("--port 0 picks a port per process; give one port to share")
        if not problems:
            check_settings(settings)  # the stores', the bus's and the cache's, one line each
            resolve(load_target(spec), spec)  # fail here, once, rather than in each worker
            bind(host, port, reuse_port=False).close()  # the address is free
    except OSError as error:
        problems = [f"cannot listen on {host}:{port}: {error}"]
    except ConfigurationError as error:
        problems = str(error).splitlines()
    if problems:
        for problem in problems:
            print(f"twofold serve: {problem}", file=sys.stderr)
        return 2
    print(describe(settings, spec=spec, host=host, port=port, workers=workers))
    os.environ["TWOFOLD_APP"] = spec
    options: dict[str, Any] = {
        "loop": "uvloop",
        "http": "twofold.http.protocol:ProblemHttpToolsProtocol",
        "lifespan": "on",
        "log_level": log_level,
        "log_config": log_config(settings.log_format, log_level),
        "access_log": access_log,
        "server_header": False,
    }
    if workers == 1:
        uvicorn.run("twofold.http.serve:app_factory", factory=True, host=host,
                    port=port, **options)  # fmt: skip
        return 0
    try:
        return run_workers(workers, host, port, options)
    except OSError as error:
        print(f"twofold serve: cannot listen on {host}:{port}: {error}", file=sys.stderr)
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
