"""The `twofold` command itself, as a process."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.e2e.processes import REPO, environment, twofold


def test_version_names_the_release_pyproject_declares(tmp_path: Path) -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    process = twofold("--version", cwd=tmp_path, env=environment())
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert output == f"twofold {declared}\n"
