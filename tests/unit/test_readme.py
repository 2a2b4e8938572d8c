"""The README's example is code that runs: the block after the marker is executed."""

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def example_source() -> str:
    text = README.read_text(encoding="utf-8")
    marker = text.index("<!-- readme-example")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert match is not None, "the README lost its example block"
    return match.group(1)


def test_readme_orders_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("readme_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(example_source(), str(README), "exec"), module.__dict__)
    asyncio.run(module.main(str(tmp_path)))
