from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.unit.shop.shop_fakes import FakeShop
from twofold.errors import ValidationError
from twofold.examples.shop import (
    ChangeEmail,
    CreateOrder,
    CreateUser,
    GetUser,
    ListUsersByEmailDomain,
    OrderItem,
    RecordLogin,
    RenameUser,
    UserActivity,
    UserView,
)

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


async def test_a_new_user_has_a_profile_with_empty_activity(app: FakeShop) -> None:
    await app.dispatch(CreateUser(user_id="u1", email="Ann@Example.com", name="Ann"))
    assert await app.ask(GetUser(user_id="u1")) == UserView(
        user_id="u1",
        email="Ann@Example.com",
        name="Ann",
        created_at=T0,
        updated_at=T0,
        activity=UserActivity(login_count=0, last_login=None, orders_count=0),
        version=1,
    )


async def test_profile_document_stores_times_as_fixed_iso_utc_text(app: FakeShop) -> None:
    await app.dispatch(CreateUser(user_id="u1", email="ann@example.com", name="Ann"))
    document = app.views.all("user_profiles")["u1"]
    assert document["created_at"] == "2024-05-01T09:00:00.000000Z"
    assert document["email_domain"] == "example.com"


async def test_unknown_user_is_none(app: FakeShop) -> None:
    assert await app.ask(GetUser(user_id="ghost")) is None


async def test_logins_count_and_stamp_the_profile(app: FakeShop) -> None:
    await app.dispatch(CreateUser(user_id="u1", email="ann@example.com", name="Ann"))
    await app.dispatch(RecordLogin(user_id="u1"))
    await app.dispatch(RecordLogin(user_id="u1"))
    user = await app.ask(GetUser(user_id="u1"))
    assert user is not None
    assert user.activity.login_count == 2
    assert user.activity.last_login == datetime(2024, 5, 1, 9, 0, 2, tzinfo=UTC)
    assert (user.version, user.updated_at) == (3, user.activity.last_login)


async def test_orders_count_comes_from_orders_without_bumping_the_version(
    stocked: FakeShop,
) -> None:
    line = OrderItem(product_id="pen", quantity=1, price=Decimal("1.50"))
    for order_id in ("o1", "o2"):
        await stocked.dispatch(CreateOrder(order_id=order_id, customer_id="ann", items=(line,)))
    user = await stocked.ask(GetUser(user_id="ann"))
    assert user is not None
    assert (user.activity.orders_count, user.version) == (2, 1)


async def test_rename_and_email_change_update_the_profile(app: FakeShop) -> None:
    await app.dispatch(CreateUser(user_id="u1", email="ann@example.com", name="Ann"))
    await app.dispatch(RenameUser(user_id="u1", name="Anna"))
    await app.dispatch(ChangeEmail(user_id="u1", new_email="anna@corp.example"))
    user = await app.ask(GetUser(user_id="u1"))
    assert user is not None
    assert (user.name, user.email, user.version) == ("Anna", "anna@corp.example", 3)
    assert user.created_at == T0 < user.updated_at


async def test_users_move_between_domains_when_their_email_does(app: FakeShop) -> None:
    await app.dispatch(CreateUser(user_id="u1", email="ann@example.com", name="Ann"))
    await app.dispatch(CreateUser(user_id="u2", email="bob@example.com", name="Bob"))
    await app.dispatch(ChangeEmail(user_id="u1", new_email="ann@corp.example"))

    example = await app.ask(ListUsersByEmailDomain(domain="example.com"))
    corp = await app.ask(ListUsersByEmailDomain(domain="@CORP.example"))
    assert [u.user_id for u in example.items] == ["u2"]
    assert [u.user_id for u in corp.items] == ["u1"]
    assert (corp.total, corp.page, corp.size) == (1, 1, 20)


async def test_domain_listing_pages_in_creation_order(app: FakeShop) -> None:
    for n in range(5):
        await app.dispatch(CreateUser(user_id=f"u{n}", email=f"u{n}@example.com", name="U"))
    second = await app.ask(ListUsersByEmailDomain(domain="example.com", page=2, size=2))
    assert [u.user_id for u in second.items] == ["u2", "u3"]
    assert second.total == 5
    empty = await app.ask(ListUsersByEmailDomain(domain="example.com", page=4, size=2))
    assert (empty.items, empty.total) == ((), 5)


@pytest.mark.parametrize(
    ("page", "size", "field"), [(0, 10, "page"), (1, 0, "size"), (1, 101, "size")]
)
async def test_domain_listing_refuses_bad_paging(
    app: FakeShop, page: int, size: int, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await app.ask(ListUsersByEmailDomain(domain="example.com", page=page, size=size))
    assert [e.field for e in caught.value.errors] == [field]
