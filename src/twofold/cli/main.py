"""The ``twofold`` command.

::

    twofold serve                      # the reference shop on 127.0.0.1:8000, SQLite files here
    twofold serve myapp:app --workers 4 --host 0.0.0.0
    twofold worker                     # projections only, sharing them with other workers
    twofold worker --source nats://broker:4222   # projections fed from a bus (read service)
    twofold relay                      # publish the log to TWOFOLD_BUS, one relay at a time
    twofold --version
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

from twofold.cli.relay import add_relay_command
from twofold.cli.serve import add_serve_command
from twofold.cli.worker import add_worker_command

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="twofold", description="CQRS with event sourcing: run and operate a service."
    )
    parser.add_argument("--version", action="version", version=f"twofold {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_serve_command(commands)
    add_worker_command(commands)
    add_relay_command(commands)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


def version() -> str:
    """The installed distribution's version (pyproject's ``version``)."""
    try:
        return metadata.version("twofold")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
