"""``twofold projections``: status, rebuild (with a live progress bar), reset, pause, resume.

Thin over ``twofold.application.operations.Operations``: each command opens the service
(``twofold.cli.opening``), asks the facade, and shows the answer.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable

import click
import msgspec
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from twofold.application.operations import ProjectionReport
from twofold.cli.failures import USAGE, Failed, Operation
from twofold.cli.opening import app_option, json_option, opened, run
from twofold.cli.output import emit_json, err, say, table

__all__ = ["progress_bar", "projections"]


@click.group("projections", short_help="Status, rebuild, reset, pause, resume.")
def projections() -> None:
    """See and repair the projections: status, rebuild, reset, pause, resume."""


# -- status -------------------------------------------------------------------------------


class StatusReport(msgspec.Struct, frozen=True, kw_only=True):
    head_position: int
    projections: list[ProjectionReport]


async def _status(app_spec: str | None) -> StatusReport:
    async with opened(app_spec) as app:
        reports, head = await app.operations.status_at()
        return StatusReport(head_position=head, projections=reports)


@projections.command(
    "status", cls=Operation, short_help="Status, position, lag, parked events, last error."
)
@app_option
@json_option
def status(app_spec: str | None, as_json: bool) -> None:
    """Where each projection stands: status, position, lag in events and seconds, parked
    events, last error."""
    report = run(_status(app_spec))
    if as_json:
        emit_json(report)
        return
    table(
        f"head position {report.head_position}",
        ["projection", "status", "health", "position", "lag events", "lag s", "parked"],
        (
            [p.name, p.status, p.level, p.position, p.lag_events, p.lag_seconds, p.parked]
            for p in report.projections
        ),
        right=("position", "lag events", "lag s", "parked"),
        notes=(_note(p) for p in report.projections if p.error),
    )


def _note(report: ProjectionReport) -> str:
    """The line under the table for a projection with an error."""
    if report.status == "retrying":
        return f"{report.name}: retrying (attempt {report.attempts}): {report.error}"
    return f"{report.name}: {report.error}"


# -- rebuild ------------------------------------------------------------------------------


class Rebuilt(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    position: int
    """The new copy's checkpoint: the log position it was built up to."""
    seconds: float


class RateColumn(ProgressColumn):
    """Events per second, averaged by rich over the last seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- events/s" if speed is None else f"{speed:,.0f} events/s")


def progress_bar() -> Progress:
    """Events done of total, rate, time left: on stderr, so stdout stays the answer."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("elapsed,"),
        TimeRemainingColumn(),
        TextColumn("left"),
        console=err(),
    )


async def _rebuild(app_spec: str | None, name: str | None, *, show: bool) -> list[Rebuilt]:
    async with opened(app_spec) as app:
        operations = app.operations
        names = operations.names(name)  # an unknown name fails here, before any bar
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(progress_bar()) if show else None
            done: list[Rebuilt] = []
            for each in names:
                step: Callable[[int, int], None] | None = None
                if bar is not None:
                    step = functools.partial(_advance, bar, bar.add_task(each, total=None))
                started = time.monotonic()
                position = await operations.rebuild(each, progress=step)
                seconds = round(time.monotonic() - started, 3)
                done.append(Rebuilt(name=each, position=position, seconds=seconds))
            return done


def _advance(bar: Progress, task: TaskID, events: int, total: int) -> None:
    bar.update(task, completed=events, total=total)


@projections.command(
    "rebuild", cls=Operation, short_help="Rebuild blue/green while the live copy serves."
)
@click.argument("name", required=False)
@click.option("--all", "every", is_flag=True, help="Rebuild every projection, one by one.")
@app_option
@json_option
def rebuild(name: str | None, every: bool, app_spec: str | None, as_json: bool) -> None:
    """Replay the log into a fresh copy of NAME's views while the live copy keeps serving,
    then switch to it (blue/green); a running server picks the new copy up.

    Shows a progress bar on stderr (events done of total, rate, time left); not with --json.
    """
    path = click.get_current_context().command_path
    if (name is None) == (not every):
        raise Failed(path, "name one projection, or pass --all (not both)", exit_code=USAGE)
    rebuilt = run(_rebuild(app_spec, name, show=not as_json))
    if as_json:
        emit_json({"rebuilt": rebuilt})
        return
    for done in rebuilt:
        say(
            f"rebuilt {done.name}: its views now reflect the log up to position "
            f"{done.position} ({done.seconds:.1f} s)"
        )


# -- reset, pause, resume -----------------------------------------------------------------


class Done(msgspec.Struct, frozen=True, kw_only=True):
    projection: str
    done: str
    """reset, pause or resume."""
    confirmed: bool | None
    """pause/resume: whether the process that runs the projection has stopped or gone on
    (or no process runs it) within --wait; null for reset (it takes effect at once)."""


async def _act(app_spec: str | None, verb: str, name: str, wait: float) -> Done:
    async with opened(app_spec) as app:
        operations = app.operations
        confirmed: bool | None = None
        if verb == "reset":
            await operations.reset(name)
        elif verb == "pause":
            confirmed = await operations.pause(name, wait=wait)
        else:
            confirmed = await operations.resume(name, wait=wait)
        return Done(projection=name, done=verb, confirmed=confirmed)


_DONE = {
    "reset": "reset {name}: its views are empty and its checkpoint is 0; the process that "
    "runs it replays the log into them from the start",
    "pause": "paused {name}: no event is applied to its views until `twofold projections "
    "resume {name}`; queries keep reading them as they are",
    "resume": "resumed {name}: its events are applied again from where it paused",
}
_SHORT = {
    "reset": "Empty the views and replay the log into them.",
    "pause": "Stop applying events until resumed.",
    "resume": "Go on applying events where it paused.",
}
_HELP = {
    "reset": "Empty NAME's views and replay the log into them from the start (not "
    "blue/green: queries see the views fill up again; rebuild keeps serving the old copy).",
    "pause": "Stop applying events to NAME's views, in whichever process runs it, until "
    "resume; queries keep reading the views as they are. Waits until that process has "
    "stopped (exit status 1 if it did not within --wait seconds).",
    "resume": "Go on applying events to NAME's views where it was paused. Waits until the "
    "process that runs it has gone on (exit status 1 if it did not within --wait seconds).",
}


def _action(verb: str) -> click.Command:
    @click.command(verb, cls=Operation, help=_HELP[verb], short_help=_SHORT[verb])
    @click.argument("name")
    @app_option
    @json_option
    def command(name: str, app_spec: str | None, as_json: bool, wait: float = 0.0) -> None:
        done = run(_act(app_spec, verb, name, wait))
        if as_json:
            emit_json(done)
        if done.confirmed is False:
            raise Failed(
                click.get_current_context().command_path,
                f"{verb} of {name} is stored, but the process that runs it did not take it "
                f"up within {wait:g} s; `twofold projections status` shows when it does",
            )
        if not as_json:
            say(_DONE[verb].format(name=name))

    if verb != "reset":
        command = click.option(
            "--wait",
            type=click.FloatRange(min=0),
            default=10.0,
            show_default=True,
            help="Seconds to wait for the process that runs it to take the request up.",
        )(command)
    return command


for _verb in ("reset", "pause", "resume"):
    projections.add_command(_action(_verb))
