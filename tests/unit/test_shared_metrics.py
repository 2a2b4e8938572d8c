"""`twofold serve --workers N` gives its workers a metrics directory of the run's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from twofold.cli.workers import MULTIPROC_DIR, shared_metrics


def test_each_run_gets_a_fresh_directory_removed_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MULTIPROC_DIR, "/somewhere/else")
    with shared_metrics() as first:
        assert os.environ[MULTIPROC_DIR] == first != "/somewhere/else"
        assert Path(first).is_dir() and not any(Path(first).iterdir())
        (Path(first) / "counter_123.db").write_bytes(b"x")  # what a worker would write
    with shared_metrics() as second:
        assert second != first and not any(Path(second).iterdir())
    assert not Path(first).exists() and not Path(second).exists()
    assert os.environ[MULTIPROC_DIR] == "/somewhere/else"


def test_the_variable_is_unset_again_when_it_was_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)
    with shared_metrics():
        assert MULTIPROC_DIR in os.environ
    assert MULTIPROC_DIR not in os.environ
