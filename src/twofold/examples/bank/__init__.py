"""A small bank: the README's "your own service" example, complete and tested.

Accounts are opened, credited and debited; a transfer changes two accounts in one command
(its events are stored together or not at all). One projection keeps each account's balance
as a view. ``twofold.examples.bank.http`` serves it::

    twofold serve twofold.examples.bank.http:app
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from twofold import (
    Aggregate,
    Collection,
    Command,
    CommandBus,
    CommandContext,
    DomainRuleError,
    Event,
    Projection,
    Query,
    QueryBus,
    Service,
    ValidationError,
    ViewReader,
    ViewTransaction,
    when,
)

__all__ = [
    "BANK",
    "Account",
    "AccountOpened",
    "BalanceView",
    "Balances",
    "Deposit",
    "GetBalance",
    "InsufficientFunds",
    "MoneyDeposited",
    "MoneyWithdrawn",
    "OpenAccount",
    "Transfer",
    "Withdraw",
]

MAX_AMOUNT = Decimal("1000000000")  # what one command may move; the view stores it exactly


class AccountOpened(Event):
    account_id: str
    owner: str


class MoneyDeposited(Event):
    account_id: str
    amount: Decimal


class MoneyWithdrawn(Event):
    account_id: str
    amount: Decimal


class InsufficientFunds(DomainRuleError):
    pass


class Account(Aggregate):
    owner: str = ""
    balance: Decimal = Decimal(0)

    def open(self, owner: str) -> None:
        self.record(AccountOpened(account_id=self.id, owner=owner))

    def deposit(self, amount: Decimal) -> None:
        self.record(MoneyDeposited(account_id=self.id, amount=amount))

    def withdraw(self, amount: Decimal) -> None:
        if amount > self.balance:
            raise InsufficientFunds(
                f"the balance of {self.id} is {self.balance}, less than {amount}"
            )
        self.record(MoneyWithdrawn(account_id=self.id, amount=amount))

    @when(AccountOpened)
    def _opened(self, event: AccountOpened) -> None:
        self.owner = event.owner

    @when(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited) -> None:
        self.balance += event.amount

    @when(MoneyWithdrawn)
    def _withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance -= event.amount


def _check_amount(amount: Decimal) -> None:
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise ValidationError({"amount": f"must be more than 0 and at most {MAX_AMOUNT}"})
    if amount != amount.quantize(Decimal("0.01")):  # bounded above, so quantize is exact
        raise ValidationError({"amount": "must have at most 2 decimal places"})


class OpenAccount(Command):
    account_id: str
    owner: str

    def validate(self) -> None:
        if not self.owner.strip() or len(self.owner) > 200:
            raise ValidationError({"owner": "must be 1 to 200 characters, not only spaces"})


class Deposit(Command):
    account_id: str
    amount: Decimal

    def validate(self) -> None:
        _check_amount(self.amount)


class Withdraw(Command):
    account_id: str
    amount: Decimal

    def validate(self) -> None:
        _check_amount(self.amount)


class Transfer(Command):
    from_account: str
    to_account: str
    amount: Decimal

    def validate(self) -> None:
        _check_amount(self.amount)
        if self.from_account == self.to_account:
            raise ValidationError({"to_account": "must differ from from_account"})


async def open_account(command: OpenAccount, ctx: CommandContext) -> None:
    ctx.create(Account, command.account_id).open(command.owner)


async def deposit(command: Deposit, ctx: CommandContext) -> None:
    (await ctx.load(Account, command.account_id)).deposit(command.amount)


async def withdraw(command: Withdraw, ctx: CommandContext) -> None:
    (await ctx.load(Account, command.account_id)).withdraw(command.amount)


async def transfer(command: Transfer, ctx: CommandContext) -> None:
    """Debit one account and credit another: both changes are saved together or neither."""
    source = await ctx.load(Account, command.from_account)
    target = await ctx.load(Account, command.to_account)
    source.withdraw(command.amount)
    target.deposit(command.amount)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BalanceView:
    """The answer of GetBalance."""

    account_id: str
    owner: str
    balance: Decimal
    version: int


class Balances(Projection):
    name = "balances"
    collections = (Collection("balances", indexes={"owner": str}),)

    @when(AccountOpened)
    def _opened(self, event: AccountOpened, tx: ViewTransaction) -> None:
        view = {"account_id": event.account_id, "owner": event.owner, "balance": "0"}
        tx.put("balances", event.account_id, {**view, "version": tx.record.stream_version})

    @when(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, tx: ViewTransaction) -> None:
        self._change(tx, event.account_id, event.amount)

    @when(MoneyWithdrawn)
    def _withdrawn(self, event: MoneyWithdrawn, tx: ViewTransaction) -> None:
        self._change(tx, event.account_id, -event.amount)

    @staticmethod
    def _change(tx: ViewTransaction, account_id: str, amount: Decimal) -> None:
        view = tx.get("balances", account_id)
        assert view is not None, "an account's events start with AccountOpened"
        view["balance"] = str(Decimal(view["balance"]) + amount)
        view["version"] = tx.record.stream_version
        tx.put("balances", account_id, view)


class GetBalance(Query[BalanceView | None]):
    account_id: str


async def get_balance(query: GetBalance, views: ViewReader) -> BalanceView | None:
    view = await views.get("balances", query.account_id)
    if view is None:
        return None
    return BalanceView(
        account_id=view["account_id"],
        owner=view["owner"],
        balance=Decimal(view["balance"]),
        version=view["version"],
    )


def register(commands: CommandBus, queries: QueryBus) -> None:
    commands.register(OpenAccount, open_account)
    commands.register(Deposit, deposit)
    commands.register(Withdraw, withdraw)
    commands.register(Transfer, transfer)
    queries.register(GetBalance, get_balance, reads=("balances",))


BANK = Service(name="bank", register=register, projections=(Balances,))
