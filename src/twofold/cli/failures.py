"""How a command fails: one line on stderr naming the command and what to do, and an exit
status (1: the operation failed; 2: the command line or the settings are wrong), never a
traceback.

Operating commands are ``Operation`` commands: whatever they raise becomes ``Failed``, which
knows the command's path (``twofold projections rebuild``) for the line it prints.
``run_command`` runs the whole group and turns click's own errors into the same one line.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any

import click

from twofold.errors import ConfigurationError, TwofoldError, ValidationError

__all__ = ["USAGE", "Failed", "NotFound", "Operation", "describe", "one_line", "run_command"]

FAILED = 1
USAGE = 2
INTERRUPTED = 130


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined with "; ", blank ones dropped."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class Failed(Exception):
    """A command that failed: shown as ``<command path>: <message>`` on one line."""

    def __init__(self, command_path: str, message: str, *, exit_code: int = FAILED) -> None:
        super().__init__(one_line(message))
        self.command_path = command_path
        self.message = one_line(message)
        self.exit_code = exit_code

    def show(self) -> None:
        click.echo(f"{self.command_path}: {self.message}", err=True)


class NotFound(Exception):
    """What the command names does not exist (a stream); the message says where to look."""


OPTION_NAMES = {
    "limit": "--limit",
    "from_version": "--from-version",
    "positions": "--position",
    "position": "POSITION",
    "projection": "NAME",
}
"""The facade's field names, as the command line spells them."""


def describe(error: BaseException) -> tuple[str, int]:
    """The message and exit status for ``error``, raised by an operation."""
    if isinstance(error, ConfigurationError):
        return str(error), USAGE
    if isinstance(error, ValidationError):
        fields = [f"{OPTION_NAMES.get(e.field, e.field)}: {e.message}" for e in error.errors]
        return "; ".join(fields) + " (nothing was changed)", USAGE
    if isinstance(error, NotFound):
        return str(error), FAILED
    if isinstance(error, TwofoldError):
        return str(error) or type(error).__name__, FAILED
    if isinstance(error, OSError) and error.errno == errno.EACCES:
        return f"permission denied: {error.filename or error}", FAILED
    # Not twofold's: a driver or the system failed (a server away, a disk full). Its type
    # names it; its message says what happened.
    return f"{type(error).__name__}: {error}", FAILED


class Operation(click.Command):
    """A command whose failures are one line: what went wrong and, from twofold's errors,
    what to do."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, Failed):
            raise
        except Exception as error:
            message, status = describe(error)
            raise Failed(ctx.command_path, message, exit_code=status) from error


def run_command(group: click.Group, args: Sequence[str]) -> int:
    """Run ``group`` on ``args``; the exit status. Every failure is one line on stderr."""
    try:
        result = group.main(args=list(args), prog_name="twofold", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.UsageError as error:
        path = error.ctx.command_path if error.ctx is not None else "twofold"
        click.echo(f"{path}: {one_line(error.format_message())} (see: {path} --help)", err=True)
        return USAGE
    except (click.ClickException, Failed) as error:
        error.show()
        return error.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("twofold: interrupted", err=True)
        return INTERRUPTED
    # standalone_mode=False hands back what the command returned: an exit status, or None.
    return result if isinstance(result, int) else 0
