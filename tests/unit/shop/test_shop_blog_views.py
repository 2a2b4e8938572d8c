from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.unit.shop.shop_fakes import FakeShop
from twofold.examples.shop import (
    AddComment,
    AuthorView,
    CommentView,
    CreatePost,
    GetPost,
    PostView,
    RenameUser,
)

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


async def test_post_view_holds_author_and_comments_joined(stocked: FakeShop) -> None:
    await stocked.dispatch(CreatePost(post_id="p1", author_id="ann", title="Hi", body="Hello"))
    await stocked.dispatch(AddComment(post_id="p1", comment_id="c1", author_id="bob", text="Yo"))
    assert await stocked.ask(GetPost(post_id="p1")) == PostView(
        post_id="p1",
        title="Hi",
        body="Hello",
        author=AuthorView(user_id="ann", name="Ann"),
        comments=(
            CommentView(
                comment_id="c1",
                text="Yo",
                author=AuthorView(user_id="bob", name="Bob"),
                created_at=T0 + timedelta(seconds=5),
            ),
        ),
        comment_count=1,
        created_at=T0 + timedelta(seconds=4),
        updated_at=T0 + timedelta(seconds=5),
        version=2,
    )


async def test_names_follow_renames_of_authors_and_commenters(stocked: FakeShop) -> None:
    await stocked.dispatch(CreatePost(post_id="p1", author_id="ann", title="A", body="a"))
    await stocked.dispatch(CreatePost(post_id="p2", author_id="bob", title="B", body="b"))
    await stocked.dispatch(AddComment(post_id="p2", comment_id="c1", author_id="ann", text="1"))
    await stocked.dispatch(AddComment(post_id="p2", comment_id="c2", author_id="bob", text="2"))
    await stocked.dispatch(AddComment(post_id="p2", comment_id="c3", author_id="ann", text="3"))
    await stocked.dispatch(RenameUser(user_id="ann", name="Ann Lee"))

    p1 = await stocked.ask(GetPost(post_id="p1"))
    p2 = await stocked.ask(GetPost(post_id="p2"))
    assert p1 is not None and p2 is not None
    assert p1.author.name == "Ann Lee"
    assert p2.author.name == "Bob"
    assert [c.author.name for c in p2.comments] == ["Ann Lee", "Bob", "Ann Lee"]
    assert (p2.comment_count, p2.version) == (3, 4)


async def test_unknown_post_is_none(app: FakeShop) -> None:
    assert await app.ask(GetPost(post_id="nope")) is None
