"""The ``blog`` projection (seed 002): each post with its author and comments, joined ahead.

A post document already holds the names of its author and commenters, so reading a post is
one lookup instead of a three-table join. Names follow renames: ``post_commenters`` (one
document per post and commenter, indexed by user) finds every post a user commented on,
and the ``author_id`` index every post they wrote.
"""

from __future__ import annotations

from twofold import Collection, Projection, ViewTransaction, when
from twofold.examples.shop.domain.events import (
    CommentAdded,
    PostCreated,
    UserCreated,
    UserRenamed,
)
from twofold.examples.shop.projections._documents import Document, recorded_at

__all__ = ["BLOG_AUTHORS", "POSTS", "POST_COMMENTERS", "BlogProjection"]

POSTS = "posts"
BLOG_AUTHORS = "blog_authors"
POST_COMMENTERS = "post_commenters"


class BlogProjection(Projection):
    """Collections:

    - ``posts``: {post_id, title, body, author_id, author: {user_id, name}, comments:
      [{comment_id, text, author: {user_id, name}, created_at}], comment_count, created_at,
      updated_at, version}; indexes author_id, created_at.
    - ``blog_authors`` {user_id, name}: private lookup of user names.
    - ``post_commenters`` {post_id, user_id}: private, indexes user_id.
    """

    name = "blog"
    on_error = "park"  # a poison event waits in the dead letters; other streams go on
    collections = (
        Collection(POSTS, indexes={"author_id": str, "created_at": str}),
        Collection(BLOG_AUTHORS),
        Collection(POST_COMMENTERS, indexes={"user_id": str}),
    )

    @when(UserCreated)
    def _user_created(self, event: UserCreated, tx: ViewTransaction) -> None:
        tx.put(BLOG_AUTHORS, event.user_id, {"user_id": event.user_id, "name": event.name})

    @when(UserRenamed)
    def _user_renamed(self, event: UserRenamed, tx: ViewTransaction) -> None:
        user_id, name = event.user_id, event.new_name
        tx.put(BLOG_AUTHORS, user_id, {"user_id": user_id, "name": name})
        post_ids = {post["post_id"] for post in tx.find(POSTS, where={"author_id": user_id})}
        post_ids.update(
            link["post_id"] for link in tx.find(POST_COMMENTERS, where={"user_id": user_id})
        )
        for post_id in sorted(post_ids):
            post = tx.get(POSTS, post_id)
            if post is None:
                continue
            if post["author"]["user_id"] == user_id:
                post["author"]["name"] = name
            for comment in post["comments"]:
                if comment["author"]["user_id"] == user_id:
                    comment["author"]["name"] = name
            tx.put(POSTS, post_id, post)

    @when(PostCreated)
    def _post_created(self, event: PostCreated, tx: ViewTransaction) -> None:
        now = recorded_at(tx)
        tx.put(
            POSTS,
            event.post_id,
            {
                "post_id": event.post_id,
                "title": event.title,
                "body": event.body,
                "author_id": event.author_id,
                "author": _author(tx, event.author_id),
                "comments": [],
                "comment_count": 0,
                "created_at": now,
                "updated_at": now,
                "version": tx.record.stream_version,
            },
        )

    @when(CommentAdded)
    def _comment_added(self, event: CommentAdded, tx: ViewTransaction) -> None:
        post = tx.get(POSTS, event.post_id)
        if post is None:
            return
        now = recorded_at(tx)
        post["comments"].append(
            {
                "comment_id": event.comment_id,
                "text": event.text,
                "author": _author(tx, event.author_id),
                "created_at": now,
            }
        )
        post["comment_count"] = len(post["comments"])
        post["updated_at"] = now
        post["version"] = tx.record.stream_version
        tx.put(POSTS, event.post_id, post)
        link = f"{event.post_id}/{event.author_id}"
        tx.put(POST_COMMENTERS, link, {"post_id": event.post_id, "user_id": event.author_id})


def _author(tx: ViewTransaction, user_id: str) -> Document:
    user = tx.get(BLOG_AUTHORS, user_id)
    return {"user_id": user_id, "name": user["name"] if user is not None else None}
