"""/docs in a real browser: Swagger UI renders the API from this server alone."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import running, shop_settings
from twofold.examples.shop.http import api as shop_api


def test_docs_render_every_route_without_the_internet(visit: Any, tmp_path: Any) -> None:
    with running(shop_api.asgi(shop_settings(tmp_path))) as url:
        for width in (1280, 390):
            docs = visit(url, width=width)
            docs.page.goto(f"{url}/docs")
            docs.page.wait_for_selector(".opblock-summary-path")
            paths = docs.page.locator(".opblock-summary-path").all_inner_texts()
            shown = {p.replace("\u200b", "") for p in paths}
            assert {"/api/orders", "/api/orders/{order_id}", "/health"} <= shown
            assert docs.page.locator(".info .title").inner_text().startswith("twofold")
            assert docs.screenshot(f"docs-{width}").stat().st_size > 0
