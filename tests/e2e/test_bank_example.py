"""The README's own-service example, served by `twofold serve` and called over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import REPO, environment, serving
from tests.e2e.shop_client import created, ok, problem

README = REPO / "README.md"
EXAMPLE = REPO / "src" / "twofold" / "examples" / "bank" / "http.py"


def test_readme_shows_the_bank_example_as_it_is() -> None:
    text = README.read_text(encoding="utf-8")
    body = EXAMPLE.read_text(encoding="utf-8")
    start = body.index("from decimal import Decimal")
    assert body[start:] in text, "README's own-service example differs from the tested module"


@pytest.mark.parametrize("target", ["app", "create_app", "api"])
def test_bank_example_serves_accounts_and_transfers(target: str, tmp_path: Path) -> None:
    env = environment(
        TWOFOLD_EVENT_STORE=f"sqlite:///{tmp_path}/bank.db",
        TWOFOLD_READ_STORE=f"sqlite:///{tmp_path}/bank-views.db",
    )
    served = serving([f"twofold.examples.bank.http:{target}"], cwd=tmp_path, env=env)
    with served as (url, _), httpx.Client(base_url=url) as client:
        ann = created(client.post("/accounts", json={"owner": "Ann", "account_id": "ann"}))
        assert ann["id"] == "ann"
        bob = created(client.post("/accounts", json={"owner": "Bob"}))
        ok(client.post("/accounts/ann/deposits", json={"amount": "12.50"}))
        moved = ok(
            client.post(
                "/transfers", json={"from_account": "ann", "to_account": bob["id"], "amount": "10"}
            )
        )
        at = {"min_position": moved["position"]}
        seen = client.get("/accounts/ann", params=at)
        assert ok(seen) == {"account_id": "ann", "owner": "Ann", "balance": "2.50", "version": 3}
        assert seen.headers["etag"].startswith('"3.')  # the version, and the answer's digest
        assert ok(client.get(f"/accounts/{bob['id']}", params=at))["balance"] == "10"
        # A transfer the balance cannot cover is refused, and nothing changes.
        refused = client.post(
            "/transfers", json={"from_account": "ann", "to_account": bob["id"], "amount": "5"}
        )
        problem(refused, 409)
        assert ok(client.get("/accounts/ann"))["balance"] == "2.50"
        problem(client.post("/accounts/ann/deposits", json={"amount": "-1"}), 422)
        assert "/transfers" in ok(client.get("/openapi.json"))["paths"]
