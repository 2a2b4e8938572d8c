"""The tree stays clean: ruff over src and tests, mypy --strict over src.

They run as tests so the one test command checks them too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing() -> None:
    result = run("ruff", "format", "--check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    """On src/ and tests/ (pyproject's [tool.mypy] files)."""
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_api_is_explicit_and_complete() -> None:
    # The order of __all__ is ruff's (RUF022, checked above); here: no gaps, no repeats.
    import twofold

    assert len(set(twofold.__all__)) == len(twofold.__all__)
    for name in twofold.__all__:
        assert hasattr(twofold, name), name


def test_the_license_file_is_the_mit_license_pyproject_declares() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the twofold authors\n")
    assert "WITHOUT WARRANTY OF ANY KIND" in text


def test_git_ignores_the_files_a_running_service_leaves() -> None:
    left = ["twofold.db", "twofold.db-wal", "views.db.lock", "twofold-views.db.projections.lock"]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *left],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.split() == left, result.stderr


def test_imports_keep_the_layers() -> None:
    """import-linter's contracts (pyproject.toml): layers, edges without adapters, the
    bottom below everything, the reference apps on the public API."""
    command = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(command), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
