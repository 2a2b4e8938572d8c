"""``twofold dead-letters``: the events a projection parked; show, retry or skip them.

Listed per stream, in stream order (a stream's later events wait behind its first parked
one). Thin over ``Operations``; retry and skip run in this process, and the process that
runs the projection picks the change up (see ``twofold.application.operations``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
import msgspec
from rich.json import JSON
from rich.markup import escape

from twofold.application.operations import decode_event
from twofold.application.views import DeadLetter
from twofold.cli.failures import Failed, Operation
from twofold.cli.opening import app_option, json_option, opened, run
from twofold.cli.output import emit_json, out, say, shown, table

__all__ = ["dead_letters"]


class Letter(msgspec.Struct, frozen=True, kw_only=True):
    """One parked event, as ``list`` shows it (``show`` adds the event's data)."""

    projection: str
    position: int
    stream_id: str
    stream_version: int
    type: str
    error: str
    parked_at: datetime


def letter(parked: DeadLetter) -> Letter:
    return Letter(
        projection=parked.projection,
        position=parked.position,
        stream_id=parked.stream_id,
        stream_version=parked.record.stream_version,
        type=parked.record.type,
        error=parked.error,
        parked_at=parked.parked_at,
    )


def in_stream_order(letters: list[DeadLetter]) -> list[DeadLetter]:
    """By projection, then stream (the stream parked first comes first), then version."""
    first: dict[tuple[str, str], int] = {}
    for parked in letters:
        key = (parked.projection, parked.stream_id)
        first[key] = min(first.get(key, parked.position), parked.position)
    return sorted(
        letters,
        key=lambda d: (d.projection, first[(d.projection, d.stream_id)], d.record.stream_version),
    )


@click.group("dead-letters")
def dead_letters() -> None:
    """Events projections parked: list, show, retry, skip."""


async def _list(app_spec: str | None, name: str | None) -> list[DeadLetter]:
    async with opened(app_spec) as app:
        return in_stream_order(await app.operations.dead_letters(name))


@dead_letters.command("list", cls=Operation)
@click.argument("name", required=False)
@app_option
@json_option
def list_letters(name: str | None, app_spec: str | None, as_json: bool) -> None:
    """The parked events of projection NAME (default: every projection), per stream in
    stream order."""
    letters = [letter(parked) for parked in run(_list(app_spec, name))]
    if as_json:
        emit_json({"dead_letters": letters})
        return
    table(
        f"{len(letters)} parked event{'' if len(letters) == 1 else 's'}",
        ["projection", "stream", "version", "position", "type", "parked at"],
        (
            [d.projection, d.stream_id, d.stream_version, d.position, d.type, d.parked_at]
            for d in letters
        ),
        right=("version", "position"),
        notes=(f"{d.projection} {d.position}: {d.error}" for d in letters),
    )


async def _show(app_spec: str | None, name: str, position: int) -> dict[str, Any]:
    async with opened(app_spec) as app:
        parked = await app.operations.dead_letter(name, position)
        return {
            "projection": parked.projection,
            "position": parked.position,
            "stream_id": parked.stream_id,
            "error": parked.error,
            "parked_at": parked.parked_at,
            "event": decode_event(parked.record),
        }


@dead_letters.command("show", cls=Operation)
@click.argument("name")
@click.argument("position", type=int)
@app_option
@json_option
def show(name: str, position: int, app_spec: str | None, as_json: bool) -> None:
    """The event projection NAME parked at POSITION: its data, metadata and the error."""
    found = run(_show(app_spec, name, position))
    if as_json:
        emit_json(found)
        return
    event = found["event"]
    console = out()
    for label, value in (
        ("projection", found["projection"]),
        ("position", found["position"]),
        ("stream", f"{event['stream_id']} version {event['stream_version']}"),
        ("type", f"{event['type']} (schema {event['schema_version']})"),
        ("event id", event["event_id"]),
        ("recorded at", event["recorded_at"]),
        ("parked at", shown(found["parked_at"])),
        ("error", found["error"]),
    ):
        console.print(f"[bold]{label:>11}[/]  {escape(str(value))}", soft_wrap=True)
    console.print("[bold]       data[/]")
    console.print(JSON.from_data(event["data"]))
    console.print("[bold]   metadata[/]")
    console.print(JSON.from_data(event["metadata"]))


class Released(msgspec.Struct, frozen=True, kw_only=True):
    projection: str
    stream_id: str | None
    done: int
    """Events applied (retry) or dropped (skip)."""
    still_parked: int
    """Events of the selection parked after it."""


async def _release(
    app_spec: str | None,
    verb: str,
    name: str,
    stream_id: str | None,
    positions: tuple[int, ...] = (),
) -> Released:
    async with opened(app_spec) as app:
        operations = app.operations
        if verb == "retry":
            done = await operations.retry(name, stream_id)
        else:
            done = await operations.skip(name, stream_id, list(positions) or None)
        left = await operations.dead_letters(name)
        still = [d for d in left if stream_id is None or d.stream_id == stream_id]
        return Released(projection=name, stream_id=stream_id, done=done, still_parked=len(still))


def _report(released: Released, verb: str, as_json: bool) -> None:
    if as_json:
        emit_json(released)
        return
    which = f"stream {released.stream_id} of {released.projection}"
    if released.stream_id is None:
        which = released.projection
    plural = "" if released.done == 1 else "s"
    action = "applied" if verb == "retry" else "dropped"
    say(
        f"{verb}: {released.done} event{plural} of {which} {action}; "
        f"{released.still_parked} still parked"
    )


@dead_letters.command("retry", cls=Operation)
@click.argument("name")
@click.option("--stream", "stream_id", metavar="ID", help="Only this stream's parked events.")
@app_option
@json_option
def retry(name: str, stream_id: str | None, app_spec: str | None, as_json: bool) -> int:
    """Apply projection NAME's parked events again, stream by stream in stream order.

    A stream that still fails stays parked; then the exit status is 1.
    """
    released = run(_release(app_spec, "retry", name, stream_id))
    _report(released, "retry", as_json)
    if released.still_parked:
        path = click.get_current_context().command_path
        raise Failed(
            path,
            f"{released.still_parked} event(s) still fail and stay parked; see "
            f"`twofold dead-letters list {name}`, fix the cause, or skip them",
        )
    return 0


@dead_letters.command("skip", cls=Operation)
@click.argument("name")
@click.option("--stream", "stream_id", metavar="ID", help="Only this stream's parked events.")
@click.option(
    "--position",
    "positions",
    type=int,
    multiple=True,
    metavar="N",
    help="Only the event parked at this position (repeat for several).",
)
@app_option
@json_option
def skip(
    name: str,
    stream_id: str | None,
    positions: tuple[int, ...],
    app_spec: str | None,
    as_json: bool,
) -> None:
    """Drop projection NAME's parked events without applying them (all, one stream's, or
    those at the given positions). A stream keeps its other parked events; once it has none
    left, its new events are applied again."""
    released = run(_release(app_spec, "skip", name, stream_id, positions))
    _report(released, "skip", as_json)
