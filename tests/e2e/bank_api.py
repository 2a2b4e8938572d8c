"""The unit tests' bank, served over HTTP: a user's own app built with the public API."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from tests.unit.bank import BANK, Deposit, GetBalance, OpenAccount
from twofold.http import Call, HttpApi

api = HttpApi(BANK, title="Bank", version="1.0")


class OpenAccountBody(msgspec.Struct):
    owner: str
    account_id: str | None = None


class DepositBody(msgspec.Struct):
    amount: Decimal


class AccountPath(msgspec.Struct):
    account_id: str


class BalanceOut(msgspec.Struct):
    account_id: str
    balance: Decimal


@api.command("/accounts", body=OpenAccountBody, status=201, location="/accounts/{id}")
def open_account(body: OpenAccountBody, call: Call) -> OpenAccount:
    """Open an account."""
    return OpenAccount(account_id=body.account_id or call.new_id(), owner=body.owner)


@api.command("/accounts/{account_id}/deposits", body=DepositBody)
def deposit(body: DepositBody, call: Call) -> Deposit:
    """Deposit money."""
    return Deposit(account_id=call.path["account_id"], amount=body.amount)


@api.query("/accounts/{account_id}", params=AccountPath, response=BalanceOut)
def get_balance(params: AccountPath, call: Call) -> GetBalance:
    """The balance of an account."""
    return GetBalance(account_id=params.account_id)


app = api.asgi()


def create_app() -> object:
    """An app factory, as `twofold serve tests.e2e.bank_api:create_app` accepts."""
    return api.asgi()
