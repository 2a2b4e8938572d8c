from __future__ import annotations

from decimal import Decimal

import pytest

from tests.unit.shop.shop_fakes import FakeShop
from twofold.errors import AggregateNotFoundError, DomainRuleError, ValidationError
from twofold.examples.shop import (
    AddComment,
    AddProduct,
    CommentAlreadyExists,
    CreatePost,
    Post,
    PostCreated,
)


def fields(error: ValidationError) -> set[str]:
    return {e.field for e in error.errors}


@pytest.mark.parametrize("price", ["-0.01", "Infinity", "NaN"])
def test_add_product_refuses_a_negative_or_non_finite_price(price: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AddProduct(product_id="p1", name="Pen", price=Decimal(price)).validate()
    assert fields(caught.value) == {"price"}


def test_add_product_needs_a_name() -> None:
    with pytest.raises(ValidationError) as caught:
        AddProduct(product_id="p1", name="", price=Decimal("0")).validate()
    assert fields(caught.value) == {"name"}


def test_create_post_needs_title_and_body() -> None:
    with pytest.raises(ValidationError) as caught:
        CreatePost(post_id="p1", author_id="ann", title=" ", body="").validate()
    assert fields(caught.value) == {"title", "body"}


def test_add_comment_needs_text() -> None:
    with pytest.raises(ValidationError) as caught:
        AddComment(post_id="p1", comment_id="c1", author_id="ann", text="").validate()
    assert fields(caught.value) == {"text"}


def test_a_comment_id_is_used_once_per_post() -> None:
    post = Post("p1")
    post.apply_stored(PostCreated(post_id="p1", author_id="ann", title="T", body="B"), 1)
    post.add_comment(comment_id="c1", author_id="bob", text="first")
    with pytest.raises(CommentAlreadyExists) as caught:
        post.add_comment(comment_id="c1", author_id="bob", text="again")
    assert isinstance(caught.value, DomainRuleError)
    assert (caught.value.post_id, caught.value.comment_id) == ("p1", "c1")


async def test_post_author_must_exist(stocked: FakeShop) -> None:
    with pytest.raises(ValidationError) as caught:
        await stocked.dispatch(CreatePost(post_id="p1", author_id="ghost", title="T", body="B"))
    assert fields(caught.value) == {"author_id"}


async def test_comment_author_must_exist(stocked: FakeShop) -> None:
    await stocked.dispatch(CreatePost(post_id="p1", author_id="ann", title="T", body="B"))
    with pytest.raises(ValidationError) as caught:
        await stocked.dispatch(
            AddComment(post_id="p1", comment_id="c1", author_id="ghost", text="hi")
        )
    assert fields(caught.value) == {"author_id"}


async def test_commenting_on_an_unknown_post_fails(stocked: FakeShop) -> None:
    with pytest.raises(AggregateNotFoundError):
        await stocked.dispatch(
            AddComment(post_id="nope", comment_id="c1", author_id="ann", text="x")
        )
