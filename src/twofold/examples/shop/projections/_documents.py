"""How the shop's views write values into JSON documents, the same way in every handler.

Money is a plain decimal string (``"12.50"``, never an exponent); times are ISO 8601 UTC
with microseconds and a ``Z`` (``2024-05-01T09:30:00.000000Z``), so they sort as text.
Handlers take times only from ``tx.record`` and values only from the event, so a view
rebuilt from the log equals the live one.
"""

from __future__ import annotations

import decimal
import functools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from twofold import ViewTransaction

__all__ = ["Document", "add_money", "divide_money", "money", "recorded_at", "timestamp"]

Document = dict[str, Any]

# Explicit, so totals do not depend on the decimal context of the thread that applies them.
_MONEY = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)
_CENTS = Decimal("0.01")


@functools.lru_cache(maxsize=256)
def timestamp(moment: datetime) -> str:
    """``moment`` as fixed-precision ISO 8601 UTC text; naive times are taken as UTC.

    Cached: the events of one group commit share their ``recorded_at``, and a batch applies
    many of them. Equal datetimes are the same instant, so they have the same text.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def recorded_at(tx: ViewTransaction) -> str:
    """When the event being applied was recorded."""
    return timestamp(tx.record.recorded_at)


def money(amount: Decimal) -> str:
    # str() is plain notation except for very small or large exponents, and three times
    # as fast as format(); an order's every price goes through here.
    text = str(amount)
    return text if "E" not in text else format(amount, "f")


def add_money(a: str, b: Decimal) -> str:
    return money(_MONEY.add(Decimal(a), b))


def divide_money(total: str, count: int) -> str:
    """The average of ``count`` amounts summing to ``total``, rounded half-even to cents."""
    if count == 0:
        return "0.00"
    average = _MONEY.divide(Decimal(total), Decimal(count))
    return money(average.quantize(_CENTS, context=_MONEY))
