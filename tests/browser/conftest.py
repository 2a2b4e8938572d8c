"""Pages tested in a real browser: Debian's headless Chromium, driven by Playwright.

Playwright's own browser download cannot run here, so the tests launch the system's
Chromium (``executable_path``). When it is missing and the tests run as root with apt-get,
the session installs Debian's ``chromium`` package first; otherwise the tests skip with a
message, and fail instead under ``CI=true``.

Every page records the requests it makes: a request to any address outside the server under
test fails the test. Screenshots go to ``test-artifacts/`` (or ``$TWOFOLD_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("TWOFOLD_TEST_ARTIFACTS", "test-artifacts"))


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _install_chromium() -> None:
    """Debian's chromium package, when this process may install it (root, apt-get)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = _find_chromium()
    if path is None:
        _install_chromium()
        path = _find_chromium()
    if path is None:
        _unavailable(
            "no Chromium here and it cannot be installed (needs root and apt-get); install "
            "Debian's chromium package to run the browser tests"
        )
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    # Module scope: while Playwright's sync API is open it holds an event loop on this
    # thread, which later asyncio tests must not find.
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        _unavailable("playwright is not installed: pip install -e '.[test]'")
        raise
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """A browser page that notes every request it makes, for one server's base URL."""

    def __init__(self, page: Any, base_url: str, name: str) -> None:
        self.page = page
        self.base_url = base_url
        self.name = name
        self.outside: list[str] = []
        page.on("request", self._note)

    def _note(self, request: Any) -> None:
        url: str = request.url
        if not url.startswith((self.base_url + "/", "data:", "blob:", "about:")):
            self.outside.append(url)

    def screenshot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def visit(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``visit(base_url, width=1280)`` -> a Visit; fails the test on outside requests."""
    contexts: list[Any] = []
    visits: list[Visit] = []

    def open_page(base_url: str, *, width: int = 1280, height: int = 800) -> Visit:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)  # a deadline for a broken page, not a speed bound
        found = Visit(page, base_url, f"{request.node.name}-{len(visits)}")
        visits.append(found)
        return found

    yield open_page
    for context in contexts:
        context.close()
    outside = [url for v in visits for url in v.outside]
    assert not outside, f"the page requested addresses outside the server: {outside}"
