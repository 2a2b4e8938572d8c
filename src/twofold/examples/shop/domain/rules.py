"""Small input rules shared by commands and aggregates; each returns a problem or None.

Each rule is also written as a JSON Schema pattern (``*_PATTERN``, ECMA-262) that admits
exactly what the rule admits, so the HTTP API's OpenAPI document declares every limit the
server enforces: a client generated from it never sends a request the rules refuse.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = [
    "BLANKS_CLASS",
    "EMAIL_PATTERN",
    "MAX_EMAIL",
    "MAX_PRICE_DIGITS",
    "MAX_PRICE_PLACES",
    "MAX_TEXT",
    "NOT_BLANK_PATTERN",
    "PRICE_PATTERN",
    "email_domain",
    "email_problem",
    "money_problem",
    "price_text_problem",
    "text_problem",
]

# What str.strip() strips (every character for which str.isspace() is true), as the body
# of a character class: spelled out, because "\s" means other sets to Python and to the
# regular expressions of JSON Schema.
BLANKS_CLASS = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{BLANKS_CLASS}][^\x00]*$"
"""Text with a character other than white space (and no NUL)."""

# Deliberately simple: one "@", no white space or control characters, a dot in the domain.
# Proving an address exists takes a confirmation mail, not a regular expression.
_LOCAL = rf"[^@\x00-\x20\x7f{BLANKS_CLASS}]"
_LABEL = rf"[^@.\x00-\x20\x7f{BLANKS_CLASS}]"
EMAIL_PATTERN = rf"^{_LOCAL}+@{_LABEL}+(\.{_LABEL}+)+$"
_EMAIL = re.compile(EMAIL_PATTERN.removeprefix("^").removesuffix("$"))
MAX_EMAIL = 254  # the longest address SMTP carries (RFC 5321)
MAX_TEXT = 10_000

# Prices: 0 or more, at most 12 digits before the point and 2 after. With quantities of at
# most 1,000,000 and 100 lines an order, every total and average fits the 34 digits the
# views compute with, whatever number of orders a customer places.
MAX_PRICE_DIGITS = 12
MAX_PRICE_PLACES = 2
PRICE_PATTERN = rf"^[0-9]{{1,{MAX_PRICE_DIGITS}}}(\.[0-9]{{1,{MAX_PRICE_PLACES}}})?$"
_PRICE = re.compile(PRICE_PATTERN.removeprefix("^").removesuffix("$"))
_PRICE_RULE = (
    f"must be a decimal amount of 0 or more, with at most {MAX_PRICE_DIGITS} digits before "
    f'the point and {MAX_PRICE_PLACES} after, such as "12.50"'
)


def email_problem(email: str) -> str | None:
    if len(email) > MAX_EMAIL:
        return f"must be at most {MAX_EMAIL} characters"
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
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if -exponent > MAX_PRICE_PLACES or amount.adjusted() >= MAX_PRICE_DIGITS:
        return _PRICE_RULE
    return None


def price_text_problem(text: str) -> str | None:
    """What is wrong with a price written as text (``"12.50"``): digits only, no sign, no
    exponent, no white space (``Decimal`` would read ``" 1.00\\n"`` as 1.00)."""
    if _PRICE.fullmatch(text) is None:
        return _PRICE_RULE
    return None
