"""The ``twofold`` command.

::

    twofold serve                      # the reference shop on 127.0.0.1:8000, SQLite files here
    twofold serve myapp:app --workers 4 --host 0.0.0.0
    twofold worker                     # projections only, sharing them with other workers
    twofold projections status         # operate a service: see docs/operations.md
    twofold worker --source nats://broker:4222   # projections fed from a bus (read service)
    twofold relay                      # publish the log to TWOFOLD_BUS, one relay at a time
    twofold --version

Every operating command reads the same ``TWOFOLD_*`` settings as ``twofold serve``, acts on the
bundled shop unless ``--app module:service`` names another service, prints a table (or, with
``--json``, one JSON document on stdout), and on failure exits non-zero with one line on stderr:

- 0: done (``verify``: the views equal a replay; ``doctor``: every check passed);
- 1: the operation failed, ``verify`` found a divergence, or a ``doctor`` check failed;
- 2: the command line or the settings are wrong (nothing was done).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import metadata

import click

from twofold.cli.dead_letters import dead_letters
from twofold.cli.doctor import doctor
from twofold.cli.failures import run_command
from twofold.cli.projections import projections
from twofold.cli.relay import relay
from twofold.cli.serve import serve
from twofold.cli.streams import streams
from twofold.cli.verify import verify
from twofold.cli.worker import worker

__all__ = ["cli", "main", "version"]


def version() -> str:
    """The installed distribution's version (pyproject's ``version``)."""
    try:
        return metadata.version("twofold")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"twofold {version()}")
        ctx.exit()


@click.group(
    name="twofold",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print twofold's version and exit.",
)
def cli() -> None:
    """CQRS with event sourcing: run and operate a service.

    Stores and options come from the TWOFOLD_* environment variables (see
    docs/operations.md and twofold.settings).
    """


for _command in (serve, worker, relay, projections, dead_letters, streams, verify, doctor):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: the process's); return the exit status."""
    return run_command(cli, list(argv) if argv is not None else sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
