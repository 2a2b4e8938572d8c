"""A small projection for the bus runner's tests: it records every version it applies, so
applying twice or out of order shows in the views."""

from __future__ import annotations

from typing import ClassVar, Literal

from twofold import Collection, Event, Projection, ViewTransaction, when


class Deposited(Event):
    account: str
    amount: int


class Frozen(Event):
    account: str


class Ledger(Projection):
    name = "ledger"
    collections = (Collection("ledger_accounts"),)
    on_error: ClassVar[Literal["stop", "park"]] = "stop"
    retries = 1
    retry_delay = 0.001

    @when(Deposited)
    def _deposited(self, event: Deposited, tx: ViewTransaction) -> None:
        if event.amount < 0:
            raise ValueError("a deposit is never negative")
        account = tx.get("ledger_accounts", event.account) or {"balance": 0, "versions": []}
        account["balance"] += event.amount
        account["versions"].append(tx.record.stream_version)
        tx.put("ledger_accounts", event.account, account)

    @when(Frozen)
    def _frozen(self, event: Frozen, tx: ViewTransaction) -> None:
        account = tx.get("ledger_accounts", event.account) or {"balance": 0, "versions": []}
        account["versions"].append(tx.record.stream_version)
        account["frozen"] = True
        tx.put("ledger_accounts", event.account, account)


class ParkingLedger(Ledger):
    on_error = "park"
