"""What operating commands print: rich tables for people, one JSON document for scripts.

Tables and the progress bar go to stdout and stderr through rich consoles (colour and
width only when a terminal is there); ``--json`` prints exactly one JSON document on stdout,
encoded by msgspec from the facade's typed reports, so its shape is the reports' fields
(documented in docs/operations.md) and stays stable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["emit_json", "err", "out", "say", "shown", "table"]


PIPE_WIDTH = 200
"""Columns of output into a pipe or a file (unless COLUMNS says): wide enough that a
table's cells are never cut short for a script or a log."""


def out() -> Console:
    """A console on stdout (made when needed: it follows whatever sys.stdout is then)."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def err() -> Console:
    """A console on stderr, for progress."""
    return Console(stderr=True, highlight=False)


def _hook(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_hook, order="deterministic")


def emit_json(value: Any) -> None:
    """``value`` as one indented JSON document on stdout (UTC times in ISO 8601)."""
    encoded = msgspec.json.format(_encoder.encode(value), indent=2)
    stdout = out().file
    stdout.write(encoded.decode() + "\n")
    stdout.flush()


def say(text: str) -> None:
    """One line on stdout, as it is (no markup, never wrapped)."""
    out().print(text, markup=False, highlight=False, soft_wrap=True)


def shown(value: Any) -> str:
    """A cell's text: "-" for nothing, ISO time, the value otherwise."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Iterable[str] = (),
    notes: Iterable[str] = (),
) -> None:
    """Print a table on stdout, then ``notes`` (long texts, such as errors), one line each;
    columns named in ``right`` are right-aligned (numbers). Cells never wrap."""
    numbers = set(right)
    console = out()
    if title is not None:
        console.print(title, soft_wrap=True)
    view = Table(header_style="bold")
    for column in columns:
        view.add_column(column, justify="right" if column in numbers else "left", no_wrap=True)
    for row in rows:
        view.add_row(*(shown(cell) for cell in row))
    console.print(view)
    for note in notes:
        console.print(escape(note), soft_wrap=True)
