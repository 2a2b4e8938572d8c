"""The ``users`` projection (seed 000): profiles with an activity summary, by id and by domain.

One collection serves both questions: ``user_profiles`` is keyed by user id and indexes
``email_domain``, so moving a user to another domain moves it in the index with the same
write, and no separate domain list can drift.
"""

from __future__ import annotations

from twofold import Collection, Projection, ViewTransaction, when
from twofold.examples.shop.domain.events import (
    OrderCreated,
    UserCreated,
    UserEmailChanged,
    UserLoggedIn,
    UserRenamed,
)
from twofold.examples.shop.domain.rules import email_domain
from twofold.examples.shop.projections._documents import Document, recorded_at

__all__ = ["USER_PROFILES", "UserProjection"]

USER_PROFILES = "user_profiles"


class UserProjection(Projection):
    """``user_profiles``: {user_id, email, email_domain, name, created_at, updated_at,
    activity: {login_count, last_login, orders_count}, version}.

    ``version`` and ``updated_at`` follow the user's own stream; ``orders_count`` counts
    the OrderCreated events naming the user as customer (other streams: no version bump).
    """

    name = "users"
    on_error = "park"  # a poison event waits in the dead letters; other streams go on
    collections = (Collection(USER_PROFILES, indexes={"email_domain": str, "created_at": str}),)

    @when(UserCreated)
    def _created(self, event: UserCreated, tx: ViewTransaction) -> None:
        now = recorded_at(tx)
        tx.put(
            USER_PROFILES,
            event.user_id,
            {
                "user_id": event.user_id,
                "email": event.email,
                "email_domain": email_domain(event.email),
                "name": event.name,
                "created_at": now,
                "updated_at": now,
                "activity": {"login_count": 0, "last_login": None, "orders_count": 0},
                "version": tx.record.stream_version,
            },
        )

    @when(UserEmailChanged)
    def _email_changed(self, event: UserEmailChanged, tx: ViewTransaction) -> None:
        profile = _own_change(tx, event.user_id)
        if profile is not None:
            profile["email"] = event.new_email
            profile["email_domain"] = email_domain(event.new_email)
            tx.put(USER_PROFILES, event.user_id, profile)

    @when(UserRenamed)
    def _renamed(self, event: UserRenamed, tx: ViewTransaction) -> None:
        profile = _own_change(tx, event.user_id)
        if profile is not None:
            profile["name"] = event.new_name
            tx.put(USER_PROFILES, event.user_id, profile)

    @when(UserLoggedIn)
    def _logged_in(self, event: UserLoggedIn, tx: ViewTransaction) -> None:
        profile = _own_change(tx, event.user_id)
        if profile is not None:
            activity = profile["activity"]
            activity["login_count"] += 1
            activity["last_login"] = recorded_at(tx)
            tx.put(USER_PROFILES, event.user_id, profile)

    @when(OrderCreated)
    def _ordered(self, event: OrderCreated, tx: ViewTransaction) -> None:
        profile = tx.get(USER_PROFILES, event.customer_id)
        if profile is not None:
            profile["activity"]["orders_count"] += 1
            tx.put(USER_PROFILES, event.customer_id, profile)


def _own_change(tx: ViewTransaction, user_id: str) -> Document | None:
    """The profile, stamped with the version and time of the user's event being applied."""
    profile = tx.get(USER_PROFILES, user_id)
    if profile is not None:
        profile["version"] = tx.record.stream_version
        profile["updated_at"] = recorded_at(tx)
    return profile
