"""/admin in a real browser: the dashboard shows the running shop, and repairs it.

A poison event is parked; the dashboard shows it with its data and error, skips it after
asking, and the orders projection is UP again. Streams are followed by correlation id,
verify runs, a rebuild shows its progress; the page is readable on a phone's width; with
API keys the key is asked once and never put in a URL. No page requests an address outside
the server (the ``visit`` fixture fails the test otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import ARTIFACTS
from tests.e2e.conftest import running, shop_settings
from tests.e2e.poison import append_to, poison_order
from tests.e2e.shop_client import ok, order, shop
from twofold.examples.shop.http import api as shop_api
from twofold.settings import ApiKey

ADMIN_KEY = "admin-key-for-the-browser-test"


@contextmanager
def served(tmp_path: Path, **settings: Any) -> Iterator[tuple[str, httpx.Client]]:
    """The shop on SQLite files in ``tmp_path``, and an HTTP client of it."""
    with (
        running(shop_api.asgi(shop_settings(tmp_path, **settings))) as url,
        httpx.Client(base_url=url) as client,
    ):
        yield url, client


def projection_row(page: Any, name: str) -> Any:
    return page.locator(f'#projections-table tr[data-projection="{name}"]')


def cell(page: Any, name: str, label: str) -> str:
    text: str = projection_row(page, name).locator(f'[data-label="{label}"]').inner_text()
    return text.strip()


def confirm(page: Any) -> None:
    dialog = page.locator("dialog#confirm")
    dialog.wait_for(state="visible")
    page.locator("#confirm-ok").click()
    dialog.wait_for(state="hidden")


def test_the_dashboard_shows_a_parked_event_and_skips_it(visit: Any, tmp_path: Path) -> None:
    with served(tmp_path) as (url, client):
        shop(client)
        # Playwright's sync API holds an event loop on this thread: append from another.
        with ThreadPoolExecutor(1) as thread:
            store = f"sqlite:///{tmp_path}/events.db"
            poisoned = thread.submit(append_to, store, "Order-o9", poison_order("o9")).result()
        placed = order(client, order_id="o2")
        ok(client.get("/api/orders/o2", params={"min_position": placed["position"]}))

        admin = visit(url)
        page = admin.page
        page.goto(f"{url}/admin")
        projection_row(page, "orders").wait_for()
        page.locator("#ov-head", has_text=str(placed["position"])).wait_for()
        assert page.locator("#ov-health").inner_text() == "DEGRADED"
        assert cell(page, "orders", "Parked") == "2"
        assert "InvalidOperation" in cell(page, "orders", "Last error")
        assert cell(page, "users", "Position") == str(placed["position"])

        # The parked events, with their data and error, in stream order.
        group = page.locator('#dl-list [data-dead-stream="Order-o9"]')
        group.wait_for()
        positions = group.locator(".event").evaluate_all(
            "events => events.map(e => Number(e.dataset.position))"
        )
        assert positions == [poisoned - 1, poisoned]
        assert "InvalidOperation" in group.inner_text()
        group.locator("details").first.locator("summary").click()
        assert '"order_id": "o9"' in group.locator("pre").first.inner_text()
        admin.screenshot("parked")
        # The README's picture (docs/images/dashboard.png is a copy): what one screen shows.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

        # Retrying applies it again: it still fails, so its stream stays parked, in order.
        group.get_by_role("button", name="Retry stream Order-o9 of orders").click()
        confirm(page)
        page.locator("#notice", has_text="0 applied, 2 still parked").wait_for()
        group = page.locator('#dl-list [data-dead-stream="Order-o9"]')
        assert group.locator(".event").count() == 2

        # Skipping asks first; cancelling changes nothing.
        group.get_by_role("button", name="Skip stream Order-o9 of orders").click()
        page.locator("#confirm-cancel").click()
        assert len(ok(client.get("/admin/api/dead-letters"))["dead_letters"]) >= 2

        group.get_by_role("button", name="Skip stream Order-o9 of orders").click()
        confirm(page)
        page.locator("#notice", has_text="2 dropped").wait_for()
        page.locator("#dl-list .empty").wait_for()
        page.locator("#ov-health", has_text="UP").wait_for()
        assert cell(page, "orders", "Parked") == "0"
        assert cell(page, "orders", "Status") == "running"
        orders = next(
            p for p in ok(client.get("/admin/api/projections"))["projections"]
            if p["name"] == "orders"
        )  # fmt: skip
        assert (orders["parked"], orders["level"]) == (0, "UP")
        admin.screenshot("recovered")


def test_the_dashboard_follows_streams_verifies_and_rebuilds(visit: Any, tmp_path: Path) -> None:
    with served(tmp_path) as (url, client):
        headers = {"x-correlation-id": "checkout-7"}
        for user_id in ("u1", "u2"):
            body = {"user_id": user_id, "email": f"{user_id}@example.com", "name": "Ann"}
            assert client.post("/api/users", json=body, headers=headers).status_code == 201

        page = visit(url).page
        page.goto(f"{url}/admin")
        projection_row(page, "users").wait_for()

        page.get_by_label("Find a stream by id").fill("User-u1")
        page.get_by_role("button", name="Open").click()
        stream = page.locator('#stream-events [data-stream="User-u1"]')
        stream.wait_for()
        stream.locator("summary").first.click()
        assert '"correlation_id": "checkout-7"' in stream.inner_text()
        stream.get_by_role("button", name="events of correlation checkout-7").click()
        trace = page.locator("#trace [data-trace]")
        trace.wait_for()
        assert re.search(r"searched the whole log \(2 events\)", trace.inner_text())
        assert trace.locator(".event").count() == 2
        trace.get_by_role("button", name="User-u2").click()
        page.locator('#stream-events [data-stream="User-u2"]').wait_for()

        page.get_by_label("Projection", exact=True).nth(1).select_option("users")
        page.get_by_role("button", name="Run verify").click()
        page.locator("#verify-result p.ok", has_text="Consistent: the live views").wait_for()
        assert page.locator('#verify-result [data-verify="users"]').count() == 1

        # The table is redrawn at each poll; the keyboard keeps its place on a button.
        projection_row(page, "users").get_by_role("button", name="Pause users").focus()
        projection_row(page, "users").evaluate("row => row.setAttribute('data-drawn', 'before')")
        # The next poll draws the row anew (the page's CSP allows no evaluated predicate)...
        page.locator('tr[data-projection="users"]:not([data-drawn])').wait_for()
        focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
        assert focused == "Pause users"  # ...and the focus is on the new row's button
        # With the keyboard alone: the button, then the dialog (Cancel has the focus first).
        projection_row(page, "users").get_by_role("button", name="Rebuild users").focus()
        page.keyboard.press("Enter")
        page.locator("dialog#confirm").wait_for(state="visible")
        assert page.evaluate("document.activeElement.id") == "confirm-cancel"
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.locator("#notice", has_text="rebuild users: done at position 2").wait_for()
        assert cell(page, "users", "Position") == "2"


def test_the_dashboard_is_readable_on_a_phone(visit: Any, tmp_path: Path) -> None:
    with served(tmp_path) as (url, client):
        shop(client)
        admin = visit(url, width=390, height=844)
        page = admin.page
        page.goto(f"{url}/admin")
        projection_row(page, "orders").wait_for()
        # Nothing wider than the screen: no sideways scrolling of the page.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px screen"
        # Each projection is a card whose cells name their column: no header row.
        header = page.evaluate("getComputedStyle(document.querySelector('thead')).display")
        assert header == "none"
        row = projection_row(page, "orders").bounding_box()
        assert row is not None and row["width"] <= 390
        # Usable with the keyboard: the first Tab reaches the skip link, then the panels.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        admin.screenshot("phone")


def test_with_keys_the_page_asks_for_one_and_keeps_it_out_of_urls(
    visit: Any, tmp_path: Path
) -> None:
    keys = (
        ApiKey(name="ops", secret=ADMIN_KEY, scopes=frozenset({"admin"})),
        ApiKey(name="app", secret="app-key-for-the-browser-test", scopes=frozenset({"commands"})),
    )
    with served(tmp_path, api_keys=keys) as (url, _):
        admin = visit(url)
        page = admin.page
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{url}/admin")
        page.locator("#notice", has_text="needs a key").wait_for()

        page.get_by_label("API key").fill("app-key-for-the-browser-test")
        page.get_by_role("button", name="Use key").click()
        page.locator("#notice", has_text="lacks the 'admin' scope").wait_for()

        page.get_by_label("API key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Use key").click()
        projection_row(page, "orders").wait_for()
        assert page.evaluate("sessionStorage.getItem('twofold.admin.key')") == ADMIN_KEY
        assert page.get_by_label("API key").input_value() == ""
        assert requested and not [u for u in requested if ADMIN_KEY in u]
        admin.screenshot("keys")
