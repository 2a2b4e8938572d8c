"""Blog posts (seed 002): a post by an author, and comments on it."""

from __future__ import annotations

from twofold import Aggregate, when
from twofold.errors import DomainRuleError
from twofold.examples.shop.domain.events import CommentAdded, PostCreated

__all__ = ["CommentAlreadyExists", "Post"]


class CommentAlreadyExists(DomainRuleError):
    """The post has a comment with this id already."""

    code = "comment_exists"

    def __init__(self, post_id: str, comment_id: str) -> None:
        self.post_id = post_id
        self.comment_id = comment_id
        super().__init__(
            f"post {post_id!r} has a comment {comment_id!r} already; "
            "give the new comment another id"
        )


class Post(Aggregate):
    author_id: str = ""
    comment_ids: frozenset[str] = frozenset()

    def write(self, *, author_id: str, title: str, body: str) -> None:
        self.record(PostCreated(post_id=self.id, author_id=author_id, title=title, body=body))

    def add_comment(self, *, comment_id: str, author_id: str, text: str) -> None:
        if comment_id in self.comment_ids:
            raise CommentAlreadyExists(self.id, comment_id)
        self.record(
            CommentAdded(post_id=self.id, comment_id=comment_id, author_id=author_id, text=text)
        )

    @when(PostCreated)
    def _created(self, event: PostCreated) -> None:
        self.author_id = event.author_id

    @when(CommentAdded)
    def _commented(self, event: CommentAdded) -> None:
        self.comment_ids = self.comment_ids | {event.comment_id}
