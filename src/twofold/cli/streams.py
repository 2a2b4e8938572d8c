"""``twofold streams``: the log's streams, and a stream's events with data and metadata.

Both are paged: ``list --after ID --limit N`` goes on after the last stream id shown,
``show ID --from-version V --limit N`` from a version; the table's last line (and the JSON's
``next_after`` / ``next_from_version``) says how to ask for the next page.
"""

from __future__ import annotations

from typing import Any

import click
import msgspec
from rich.json import JSON
from rich.markup import escape

from twofold.application.operations import STREAM_PAGE, decode_event
from twofold.cli.failures import NotFound, Operation
from twofold.cli.opening import app_option, json_option, opened, run
from twofold.cli.output import emit_json, out, say, table
from twofold.records import StreamInfo

__all__ = ["streams"]


@click.group("streams")
def streams() -> None:
    """The event log's streams and their events."""


class StreamPage(msgspec.Struct, frozen=True, kw_only=True):
    streams: list[StreamInfo]
    next_after: str | None
    """Pass it as --after for the next page; null on the last page."""


async def _list(app_spec: str | None, after: str | None, limit: int) -> list[StreamInfo]:
    async with opened(app_spec) as app:
        return await app.operations.streams(after=after, limit=limit)


@streams.command("list", cls=Operation)
@click.option("--after", metavar="ID", help="Start after this stream id (the next page).")
@click.option(
    "--limit", type=int, default=STREAM_PAGE, show_default=True, help="Streams on a page."
)
@app_option
@json_option
def list_streams(after: str | None, limit: int, app_spec: str | None, as_json: bool) -> None:
    """The log's streams in id order, with their version and last position, a page at a
    time."""
    found = run(_list(app_spec, after, limit))
    following = found[-1].stream_id if len(found) == limit else None
    if as_json:
        emit_json(StreamPage(streams=found, next_after=following))
        return
    table(
        None,
        ["stream", "version", "last position"],
        ([s.stream_id, s.version, s.last_position] for s in found),
        right=("version", "last position"),
    )
    if following is not None:
        say(f"next page: twofold streams list --after {following}")


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    events: list[dict[str, Any]]
    next_from_version: int | None
    """Pass it as --from-version for the next page; null on the last page."""


async def _show(app_spec: str | None, stream_id: str, from_version: int, limit: int) -> EventPage:
    async with opened(app_spec) as app:
        records = await app.operations.stream(stream_id, from_version=from_version, limit=limit)
        if not records and from_version == 1:
            raise NotFound(f"no stream {stream_id!r} in the log; `twofold streams list` lists them")
        following = records[-1].stream_version + 1 if len(records) == limit else None
        return EventPage(
            stream_id=stream_id,
            events=[decode_event(record) for record in records],
            next_from_version=following,
        )


@streams.command("show", cls=Operation)
@click.argument("stream_id")
@click.option(
    "--from-version", type=int, default=1, show_default=True, help="The first version shown."
)
@click.option("--limit", type=int, default=STREAM_PAGE, show_default=True, help="Events on a page.")
@app_option
@json_option
def show(
    stream_id: str, from_version: int, limit: int, app_spec: str | None, as_json: bool
) -> None:
    """STREAM_ID's events in stream order, with their data and metadata (correlation and
    causation ids), a page at a time."""
    page = run(_show(app_spec, stream_id, from_version, limit))
    if as_json:
        emit_json(page)
        return
    console = out()
    for event in page.events:
        console.print(
            f"[bold]version {event['stream_version']}[/]  position {event['position']}  "
            f"{escape(event['type'])} (schema {event['schema_version']})  "
            f"{event['recorded_at']}  id {event['event_id']}",
            soft_wrap=True,
        )
        console.print("  data")
        console.print(JSON.from_data(event["data"]))
        console.print("  metadata")
        console.print(JSON.from_data(event["metadata"]))
    if page.next_from_version is not None:
        console.print(
            f"next page: twofold streams show {escape(stream_id)} "
            f"--from-version {page.next_from_version}",
            soft_wrap=True,
        )
