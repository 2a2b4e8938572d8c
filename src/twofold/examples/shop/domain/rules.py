"""Small input rules shared by commands and aggregates; each returns a problem or None."""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["email_domain", "email_problem", "money_problem", "text_problem"]

# Deliberately simple: one "@", no spaces, a dot in the domain. Proving an address exists
# takes a confirmation mail, not a regular expression.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
MAX_TEXT = 10_000


def email_problem(email: str) -> str | None:
    if not _EMAIL.fullmatch(email):
        return "must be an e-mail address such as name@example.com"
    return None


def email_domain(email: str) -> str:
    """The part after "@", lower-cased (domains are case-insensitive)."""
    return email.rpartition("@")[2].lower()


def text_problem(text: str, *, limit: int = 200) -> str | None:
    if not text.strip():
        return "must not be empty"
    if len(text) > limit:
        return f"must be at most {limit} characters"
    return None


def money_problem(amount: Decimal) -> str | None:
    if not amount.is_finite():
        return "must be a finite decimal amount"
    if amount < 0:
        return "must be 0 or more"
    return None
