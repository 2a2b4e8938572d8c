"""``twofold doctor``: check the settings and that every configured part answers.

One line per check, in order; exit status 1 if any failed. A check that cannot run because
an earlier one failed (no store to open without valid settings) is skipped, not failed.

The checks are the list ``CHECKS``: to check a new part, write ``async def check(found:
Found) -> str`` that returns what it saw (one line) or raises with what is wrong (one line:
what failed, and what to do), give it a name and ``needs`` (the earlier checks it relies on),
and append it. A check that does not apply to this configuration raises ``NotApplicable``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import urlsplit

import click
import msgspec
from rich.markup import escape

from twofold.application.app import Service
from twofold.application.ports import EventStore
from twofold.application.runner import foreign_views
from twofold.application.views import ReadStore
from twofold.bootstrap import check_settings, open_event_store, open_read_store
from twofold.cli.failures import Operation, describe, one_line
from twofold.cli.opening import app_option, check_exists, json_option, run, settings
from twofold.cli.output import emit_json, out
from twofold.cli.serve import redact
from twofold.cli.worker import DEFAULT_SERVICE, load_service
from twofold.errors import ConfigurationError
from twofold.settings import Settings

__all__ = ["CHECKS", "Check", "CheckResult", "Found", "NotApplicable", "doctor", "examine"]

ANSWER_DEADLINE = 10.0
"""Seconds a part has to answer before its check fails (a server that hangs, a firewall
that drops packets): a deadline for a broken setup, not a measure of speed."""

Outcome = Literal["ok", "failed", "skipped"]


class NotApplicable(Exception):
    """Raised by a check that this configuration does not call for (no bus configured)."""


@dataclasses.dataclass
class Found:
    """What the checks found so far, for the checks after them (stores stay open until
    every check ran)."""

    app_spec: str
    settings: Settings | None = None
    service: Service | None = None
    event_store: EventStore | None = None
    read_store: ReadStore | None = None


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Found], Awaitable[str]]
    needs: tuple[str, ...] = ()
    """Checks that must have passed for this one to run."""


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    outcome: Outcome
    detail: str


class Report(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    checks: list[CheckResult]


# -- the checks ---------------------------------------------------------------------------


async def _settings(found: Found) -> str:
    found.settings = configured = settings()
    check_settings(configured)
    return (
        f"events {redact(configured.event_store)}, views {redact(configured.read_store)}, "
        f"projections {configured.projections}, lag threshold {configured.lag_threshold:g} s"
    )


async def _app(found: Found) -> str:
    sys.path.insert(0, os.getcwd())
    service = load_service(found.app_spec)
    found.service = service
    names = [p.name for p in service.projection_instances()]
    return f"{found.app_spec}: {len(names)} projections ({', '.join(names) or 'none'})"


async def _event_store(found: Found) -> str:
    assert found.settings is not None
    url = found.settings.event_store
    check_exists("TWOFOLD_EVENT_STORE", url)
    found.event_store, _ = await open_event_store(url)
    head = await found.event_store.head_position()
    return f"{redact(url)} answers: head position {head}"


async def _read_store(found: Found) -> str:
    assert found.settings is not None
    url = found.settings.read_store
    check_exists("TWOFOLD_READ_STORE", url)
    found.read_store = await open_read_store(url)
    states = await found.read_store.states()
    kept = ", ".join(f"{s.name} at {s.checkpoint}" for s in states) or "none yet"
    return f"{redact(url)} answers: projections {kept}"


async def _views(found: Found) -> str:
    """The views belong to this log: built from this event store, not past its head (as
    after a restore of the log alone, or two settings pointing at different places)."""
    assert found.event_store is not None and found.read_store is not None
    states = await found.read_store.states()
    head = await found.event_store.head_position()
    identity = await found.event_store.identity()
    foreign: dict[str, list[str]] = {}  # why -> the projections it holds for
    for state in states:
        why = foreign_views(state.event_store, identity, state.checkpoint, head)
        if why is not None:
            foreign.setdefault(why, []).append(state.name)
    if foreign:
        listed = "; ".join(f"{', '.join(names)}: {why}" for why, names in foreign.items())
        raise ConfigurationError(
            f"views that are not this log's: {listed}; point TWOFOLD_EVENT_STORE "
            "and TWOFOLD_READ_STORE at the same service's stores, or rebuild them "
            "(twofold projections rebuild --all)"
        )
    return f"{len(states)} projections built from this event store's log (head position {head})"


async def reachable(url: str) -> str:
    """Whether the server of ``url`` (host and port) accepts a connection."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigurationError(f"{redact(url)} names no host")
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    if port is None:
        raise ConfigurationError(f"{redact(url)} names no port, and {parts.scheme}:// has none")
    _, writer = await asyncio.open_connection(parts.hostname, port)
    writer.close()
    await writer.wait_closed()
    return f"{redact(url)} accepts connections"


DEFAULT_PORTS = {"nats": 4222, "redis": 6379, "rediss": 6379, "kafka": 9092}


async def _bus(found: Found) -> str:
    assert found.settings is not None
    if not found.settings.bus_urls:
        raise NotApplicable("TWOFOLD_BUS is not set")
    return "; ".join([await reachable(url) for url in found.settings.bus_urls])


async def _cache(found: Found) -> str:
    assert found.settings is not None
    if not found.settings.cache:
        raise NotApplicable("TWOFOLD_CACHE is not set")
    return await reachable(found.settings.cache)


CHECKS: list[Check] = [
    Check("settings", _settings),
    Check("app", _app),
    Check("event store", _event_store, needs=("settings",)),
    Check("read store", _read_store, needs=("settings",)),
    Check("views", _views, needs=("event store", "read store")),
    Check("bus", _bus, needs=("settings",)),
    Check("cache", _cache, needs=("settings",)),
]
"""Run in this order; append a Check to check one more part."""


async def examine(app_spec: str, checks: list[Check] | None = None) -> list[CheckResult]:
    """Run ``checks`` (default: ``CHECKS``) in order; one result each."""
    found = Found(app_spec=app_spec)
    try:
        return await _examine(found, checks if checks is not None else CHECKS)
    finally:
        for store in (found.event_store, found.read_store):
            if store is not None:
                await store.close()


async def _examine(found: Found, checks: list[Check]) -> list[CheckResult]:
    results: list[CheckResult] = []
    passed: set[str] = set()
    for check in checks:
        failed = [name for name in check.needs if name not in passed]
        if failed:
            detail = f"needs {', '.join(failed)}, which did not pass"
            results.append(CheckResult(name=check.name, outcome="skipped", detail=detail))
            continue
        try:
            detail = await asyncio.wait_for(check.run(found), ANSWER_DEADLINE)
        except NotApplicable as reason:
            results.append(CheckResult(name=check.name, outcome="skipped", detail=str(reason)))
            continue
        except TimeoutError:
            detail = f"no answer within {ANSWER_DEADLINE:g} s"
            results.append(CheckResult(name=check.name, outcome="failed", detail=detail))
            continue
        except Exception as error:
            message, _ = describe(error)
            results.append(CheckResult(name=check.name, outcome="failed", detail=one_line(message)))
            continue
        passed.add(check.name)
        results.append(CheckResult(name=check.name, outcome="ok", detail=one_line(detail)))
    return results


_MARKS = {"ok": "[green]ok[/]  ", "failed": "[red]FAIL[/]", "skipped": "[dim]skip[/]"}


@click.command("doctor", cls=Operation, short_help="Check the settings and that each part answers.")
@app_option
@json_option
def doctor(app_spec: str | None, as_json: bool) -> int:
    """Check the settings and that each configured store (and bus, cache) answers.

    One line per check; exit status 1 if any failed.
    """
    results = run(examine(app_spec or DEFAULT_SERVICE))
    ok = all(result.outcome != "failed" for result in results)
    if as_json:
        emit_json(Report(ok=ok, checks=results))
    else:
        console = out()
        for result in results:
            line = f"{_MARKS[result.outcome]} {result.name}: {escape(result.detail)}"
            console.print(line, soft_wrap=True)
    return 0 if ok else 1
