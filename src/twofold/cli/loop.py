"""The event loop twofold's own processes run on: uvloop where it is installed (it comes with
twofold's dependencies on Linux and macOS, through ``uvicorn[standard]``), asyncio's otherwise.

``twofold serve`` gets it from uvicorn; ``twofold worker`` and the benchmarks from ``run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop, uvloop's if it can be had."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is there wherever uvicorn[standard] has it
        return asyncio.run(main)
    return uvloop.run(main)
