"""``twofold verify``: do the live views equal a fresh replay of the log?

For each projection (or NAME), the facade replays the log into a scratch copy of the views
(never made active, dropped after) up to the live copy's checkpoint and compares them,
collection by collection: documents missing, extra and different, with the first
differences field by field. Exit status 1 on any divergence (seed 004's divergence
detection), with one line on stderr saying which projections diverge.
"""

from __future__ import annotations

from typing import Any

import click
import msgspec
from rich.markup import escape

from twofold.application.verify import ProjectionVerification, VerifyReport
from twofold.cli.failures import Failed, Operation
from twofold.cli.opening import app_option, json_option, opened, run
from twofold.cli.output import emit_json, out, table

__all__ = ["verify"]


async def _verify(app_spec: str | None, name: str | None) -> VerifyReport:
    async with opened(app_spec) as app:
        return await app.operations.verify(name)


def _value(value: Any) -> str:
    return escape(msgspec.json.encode(value).decode())


def _show(result: ProjectionVerification) -> None:
    console = out()
    if result.error is not None:
        console.print(f"[red]{escape(result.name)}: not verified[/]: {escape(result.error)}")
        return
    verdict = "[green]consistent[/]" if result.consistent else "[red]DIVERGES[/]"
    table(
        f"[bold]{escape(result.name)}[/] at position {result.position}: {verdict}",
        ["collection", "documents", "missing", "extra", "different"],
        ([c.name, c.documents, c.missing, c.extra, c.different] for c in result.collections),
        right=("documents", "missing", "extra", "different"),
    )
    for collection in result.collections:
        where = escape(collection.name)
        for key in collection.missing_keys:
            console.print(f"  {where}/{escape(key)}: missing (the replay has it)", soft_wrap=True)
        for key in collection.extra_keys:
            console.print(f"  {where}/{escape(key)}: extra (the replay has none)", soft_wrap=True)
        for document in collection.differences:
            for field in document.fields:
                console.print(
                    f"  {where}/{escape(document.key)}: {escape(field.path)}: live "
                    f"{_value(field.live)}, replay {_value(field.expected)}",
                    soft_wrap=True,
                )


@click.command(
    "verify", cls=Operation, short_help="Compare the live views with a replay of the log."
)
@click.argument("name", required=False)
@app_option
@json_option
def verify(name: str | None, app_spec: str | None, as_json: bool) -> int:
    """Replay the log into a scratch copy of the views of NAME (default: every projection)
    and compare it with the live views: documents missing, extra and different, field by
    field. Exit status 1 on any divergence."""
    report = run(_verify(app_spec, name))
    if as_json:
        emit_json(report)
    else:
        for result in report.projections:
            _show(result)
    if report.consistent:
        return 0
    diverging = [p for p in report.projections if not p.consistent]
    repair = ", ".join(
        f"`twofold projections rebuild {p.name}`" for p in diverging if p.error is None
    )
    advice = f"; {repair} replaces the live views with a replay of the log" if repair else ""
    summaries = "; ".join(p.summary() for p in diverging)
    raise Failed(click.get_current_context().command_path, summaries + advice)
