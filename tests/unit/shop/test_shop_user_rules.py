from __future__ import annotations

import pytest

from tests.unit.shop.shop_fakes import FakeShop
from twofold.errors import AggregateExistsError, AggregateNotFoundError, ValidationError
from twofold.examples.shop import (
    ChangeEmail,
    CreateUser,
    RecordLogin,
    RenameUser,
    User,
    UserCreated,
    UserEmailChanged,
    UserRenamed,
)


def fields(error: ValidationError) -> set[str]:
    return {e.field for e in error.errors}


def registered_user() -> User:
    user = User("u1")
    user.apply_stored(UserCreated(user_id="u1", email="a@example.com", name="Ann"), 1)
    return user


@pytest.mark.parametrize("email", ["", "plain", "a@b", "a b@example.com", "a@@example.com"])
def test_create_user_rejects_malformed_email(email: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CreateUser(user_id="u1", email=email, name="Ann").validate()
    assert fields(caught.value) == {"email"}


def test_create_user_lists_every_field_at_fault() -> None:
    with pytest.raises(ValidationError) as caught:
        CreateUser(user_id="", email="nope", name="  ").validate()
    assert fields(caught.value) == {"user_id", "email", "name"}


def test_create_user_accepts_a_simple_address() -> None:
    CreateUser(user_id="u1", email="ann.lee+shop@mail.example.co.uk", name="Ann").validate()


def test_change_email_and_rename_check_their_input() -> None:
    with pytest.raises(ValidationError) as caught:
        ChangeEmail(user_id="u1", new_email="no-at-sign").validate()
    assert fields(caught.value) == {"new_email"}
    with pytest.raises(ValidationError) as caught:
        RenameUser(user_id="u1", name="").validate()
    assert fields(caught.value) == {"name"}


def test_change_email_records_the_old_and_new_address() -> None:
    user = registered_user()
    user.change_email("ann@corp.example")
    assert user.pending_events == (
        UserEmailChanged(user_id="u1", old_email="a@example.com", new_email="ann@corp.example"),
    )
    assert user.email == "ann@corp.example"


def test_changing_to_the_same_email_or_name_records_nothing() -> None:
    user = registered_user()
    user.change_email("a@example.com")
    user.rename("Ann")
    assert user.pending_events == ()


def test_rename_records_the_old_and_new_name() -> None:
    user = registered_user()
    user.rename("Anna")
    assert user.pending_events == (UserRenamed(user_id="u1", old_name="Ann", new_name="Anna"),)


async def test_creating_a_taken_user_id_fails(app: FakeShop) -> None:
    await app.dispatch(CreateUser(user_id="u1", email="a@example.com", name="Ann"))
    with pytest.raises(AggregateExistsError):
        await app.dispatch(CreateUser(user_id="u1", email="b@example.com", name="Bea"))


async def test_login_of_unknown_user_fails(app: FakeShop) -> None:
    with pytest.raises(AggregateNotFoundError):
        await app.dispatch(RecordLogin(user_id="ghost"))
