"""How an operating command opens the service it acts on.

The same ``TWOFOLD_*`` settings as ``twofold serve``; the bundled shop unless ``--app`` (or
``TWOFOLD_APP``, as for ``twofold serve``) names a Service or an HttpApi. The App is built by
``twofold.bootstrap`` with ``TWOFOLD_PROJECTIONS=off``: this process joins the processes
sharing the read store only to follow them, and never takes the projections' lock or leases
from a running server. An operation that must apply events (rebuild, verify, retry) does so
where the operations facade says.
"""

from __future__ import annotations

import dataclasses
import logging.config
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from twofold.application.app import App
from twofold.bootstrap import bootstrap
from twofold.cli import loop
from twofold.cli.serve import redact
from twofold.cli.worker import DEFAULT_SERVICE, load_service
from twofold.errors import ConfigurationError
from twofold.logs import log_config
from twofold.settings import Settings

__all__ = ["app_option", "check_exists", "json_option", "opened", "run", "settings"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def app_option(function: F) -> F:
    """``--app MODULE:SERVICE`` (default: ``TWOFOLD_APP``, else the bundled shop)."""
    return click.option(
        "--app",
        "app_spec",
        envvar="TWOFOLD_APP",
        default=None,
        metavar="MODULE:SERVICE",
        help="The service to act on: a Service or an HttpApi (default: TWOFOLD_APP, else the "
        "bundled shop).",
    )(function)


def json_option(function: F) -> F:
    """``--json``: one JSON document on stdout instead of tables (docs/operations.md)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document on stdout, for scripts (shapes: docs/operations.md).",
    )(function)


def settings() -> Settings:
    """The settings, from the environment; logs go to stderr, errors only (an operating
    command's own output is its answer)."""
    found = Settings.from_env()
    logging.config.dictConfig(log_config(found.log_format, "critical"))
    return found


def check_exists(setting: str, url: str) -> None:
    """Refuse a SQLite store whose file does not exist: opening it would create an empty
    store, and a command run in the wrong folder would report on that instead."""
    if urlsplit(url).scheme != "sqlite":
        return
    path = url[len("sqlite://") :].removeprefix("/")
    if path in ("", ":memory:") or Path(path).exists():
        return
    raise ConfigurationError(
        f"{setting} {redact(url)}: no file {path} here ({os.getcwd()}); run from the folder "
        f"that holds it, or set {setting} (twofold serve creates it on its first start)"
    )


@asynccontextmanager
async def opened(app_spec: str | None) -> AsyncIterator[App]:
    """The App of ``app_spec`` over the configured stores (which must exist), started
    without running any projection, closed after."""
    found = settings()
    check_exists("TWOFOLD_EVENT_STORE", found.event_store)
    check_exists("TWOFOLD_READ_STORE", found.read_store)
    sys.path.insert(0, os.getcwd())  # the user's modules, as `twofold serve` finds them
    service = load_service(app_spec or DEFAULT_SERVICE)
    app = await bootstrap(service, dataclasses.replace(found, projections="off"))
    try:
        await app.start()
        yield app
    finally:
        await app.close()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run an operation's coroutine to completion (twofold's event loop)."""
    return loop.run(main)
