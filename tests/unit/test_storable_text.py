"""Text no store can hold (NUL, lone surrogates) is refused before any handler runs, for
every command, on every backend alike, naming the field; nothing is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.bank import BANK, OpenAccount
from twofold import App, Metadata, Settings, ValidationError, bootstrap
from twofold.domain.messages import id_problem, unstorable_text
from twofold.examples import shop


def fields(error: ValidationError) -> set[str]:
    return {e.field for e in error.errors}


def test_unstorable_text_names_each_field_through_nested_values() -> None:
    command = shop.CreateOrder(
        order_id="o1",
        customer_id="c\x00",
        items=(
            shop.OrderItem(product_id="p1", quantity=1, price=Decimal(1)),
            shop.OrderItem(product_id="p\ud800", quantity=1, price=Decimal(1)),
        ),
    )
    problems = unstorable_text(command)
    assert set(problems) == {"customer_id", "items[1].product_id"}
    assert "NUL" in problems["customer_id"]
    assert "surrogate" in problems["items[1].product_id"]
    assert unstorable_text({"k\x00": "v", "ok": ["a", "b\x00"]}) == {
        "k\x00": unstorable_text("\x00")["value"],
        "ok[1]": unstorable_text("\x00")["value"],
    }


def test_text_that_stores_anywhere_passes() -> None:
    assert unstorable_text({"name": "Zoë 😀 \x01 \u2028 \ufffd", "n": 1, "d": Decimal(2)}) == {}


@pytest.mark.parametrize(
    "value", ["", "a/b", "../../etc/passwd", "a\nb", "a b", "-a", ".", "..", "x" * 129]
)
def test_an_id_outside_the_alphabet_is_refused(value: str) -> None:
    assert id_problem(value) is not None


@pytest.mark.parametrize("value", ["a", "u-1", "A.b_c:d@e-f", "0" * 128, "a..", "user@example.com"])
def test_an_id_in_the_alphabet_is_accepted(value: str) -> None:
    assert id_problem(value) is None


@pytest.fixture(params=["memory", "sqlite"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    events = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/events.db"
    settings = Settings(event_store=events, read_store=f"sqlite:///{tmp_path}/views.db")
    async with await bootstrap(BANK, settings) as running:
        yield running


@pytest.mark.parametrize("owner", ["a\x00b", "lone \udc00 surrogate"])
async def test_a_command_with_unstorable_text_records_nothing(app: App, owner: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await app.dispatch(OpenAccount(account_id="a1", owner=owner))
    assert fields(caught.value) == {"owner"}
    assert await app.event_store.head_position() == 0


async def test_unstorable_metadata_and_idempotency_keys_are_refused(app: App) -> None:
    command = OpenAccount(account_id="a1", owner="ann")
    with pytest.raises(ValidationError) as caught:
        await app.dispatch(command, Metadata(correlation_id="c\x00", extra={"tenant": "t\x00"}))
    assert fields(caught.value) == {"metadata.correlation_id", "metadata.extra.tenant"}
    with pytest.raises(ValidationError) as caught:
        await app.dispatch(command, idempotency_key="k\x00")
    assert fields(caught.value) == {"idempotency_key"}
    assert await app.event_store.head_position() == 0
    assert (await app.dispatch(command)).version == 1
