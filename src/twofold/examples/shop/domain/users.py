"""Users: created with an e-mail and a name; both may change; logins are recorded."""

from __future__ import annotations

from twofold import Aggregate, when
from twofold.examples.shop.domain.events import (
    UserCreated,
    UserEmailChanged,
    UserLoggedIn,
    UserRenamed,
)

__all__ = ["User"]


class User(Aggregate):
    """A shop user. Input is checked by the commands; the state only tracks what rules need."""

    email: str = ""
    name: str = ""

    def register(self, *, email: str, name: str) -> None:
        self.record(UserCreated(user_id=self.id, email=email, name=name))

    def change_email(self, new_email: str) -> None:
        """Moves the user to ``new_email``; the same address again records nothing."""
        if new_email != self.email:
            self.record(
                UserEmailChanged(user_id=self.id, old_email=self.email, new_email=new_email)
            )

    def rename(self, name: str) -> None:
        """Renames the user; the same name again records nothing."""
        if name != self.name:
            self.record(UserRenamed(user_id=self.id, old_name=self.name, new_name=name))

    def record_login(self) -> None:
        self.record(UserLoggedIn(user_id=self.id))

    @when(UserCreated)
    def _created(self, event: UserCreated) -> None:
        self.email = event.email
        self.name = event.name

    @when(UserEmailChanged)
    def _email_changed(self, event: UserEmailChanged) -> None:
        self.email = event.new_email

    @when(UserRenamed)
    def _renamed(self, event: UserRenamed) -> None:
        self.name = event.new_name

    @when(UserLoggedIn)
    def _logged_in(self, event: UserLoggedIn) -> None:
        pass  # a login changes no rule-relevant state; the views count them
