"""The bank over HTTP: ``twofold serve twofold.examples.bank.http:app``.

The README's "Your own service over HTTP" shows this module; the test suite serves it and
calls every route over HTTP (tests/e2e/test_bank_example.py).
"""

from decimal import Decimal

import msgspec

from twofold.examples.bank import BANK, BalanceView, Deposit, GetBalance, OpenAccount, Transfer
from twofold.http import Call, HttpApi

api = HttpApi(BANK, title="Bank", version="1.0")


class OpenAccountBody(msgspec.Struct):
    owner: str
    account_id: str | None = None


class DepositBody(msgspec.Struct):
    amount: Decimal  # a decimal string such as "12.50"


class TransferBody(msgspec.Struct):
    from_account: str
    to_account: str
    amount: Decimal


class AccountPath(msgspec.Struct):
    account_id: str


@api.command("/accounts", body=OpenAccountBody, status=201, location="/accounts/{id}")
def open_account(body: OpenAccountBody, call: Call) -> OpenAccount:
    """Open an account."""  # the docstring is the OpenAPI summary
    return OpenAccount(account_id=body.account_id or call.new_id(), owner=body.owner)


@api.command("/accounts/{account_id}/deposits", body=DepositBody)
def deposit(body: DepositBody, call: Call) -> Deposit:
    """Deposit money into an account."""
    return Deposit(account_id=call.path["account_id"], amount=body.amount)


@api.command("/transfers", body=TransferBody)
def transfer(body: TransferBody, call: Call) -> Transfer:
    """Move money between two accounts: both change, or neither."""
    return Transfer(from_account=body.from_account, to_account=body.to_account, amount=body.amount)


@api.query("/accounts/{account_id}", params=AccountPath, response=BalanceView, etag="version")
def get_balance(params: AccountPath, call: Call) -> GetBalance:
    """An account's owner and balance."""
    return GetBalance(account_id=params.account_id)


app = api.asgi()  # an ASGI app; `twofold serve` also takes `create_app` or `api`


def create_app() -> object:
    """An app factory: `twofold serve twofold.examples.bank.http:create_app`."""
    return api.asgi()
