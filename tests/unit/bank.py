"""A tiny bank used by the core's unit tests: accounts with deposits and withdrawals."""

from __future__ import annotations

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
    snapshot_every = 5

    def open(self, owner: str) -> None:
        self.record(AccountOpened(account_id=self.id, owner=owner))

    def deposit(self, amount: Decimal) -> None:
        self.record(MoneyDeposited(account_id=self.id, amount=amount))

    def withdraw(self, amount: Decimal) -> None:
        if amount > self.balance:
            raise InsufficientFunds(f"balance {self.balance} is less than {amount}")
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


class OpenAccount(Command):
    account_id: str
    owner: str

    def validate(self) -> None:
        if not self.owner.strip():
            raise ValidationError({"owner": "must not be empty"})


class Deposit(Command):
    account_id: str
    amount: Decimal

    def validate(self) -> None:
        if self.amount <= 0:
            raise ValidationError({"amount": "must be more than 0"})


class Withdraw(Command):
    account_id: str
    amount: Decimal


class Touch(Command):
    """Loads the account and records nothing."""

    account_id: str


async def open_account(command: OpenAccount, ctx: CommandContext) -> None:
    ctx.create(Account, command.account_id).open(command.owner)


async def deposit(command: Deposit, ctx: CommandContext) -> None:
    (await ctx.load(Account, command.account_id)).deposit(command.amount)


async def withdraw(command: Withdraw, ctx: CommandContext) -> None:
    (await ctx.load(Account, command.account_id)).withdraw(command.amount)


async def touch(command: Touch, ctx: CommandContext) -> None:
    await ctx.load(Account, command.account_id)


class Balances(Projection):
    name = "balances"
    collections = (Collection("balances", indexes={"owner": str}),)

    @when(AccountOpened)
    def _opened(self, event: AccountOpened, tx: ViewTransaction) -> None:
        tx.put(
            "balances",
            event.account_id,
            {"owner": event.owner, "balance": "0", "version": tx.record.stream_version},
        )

    @when(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, tx: ViewTransaction) -> None:
        self._change(tx, event.account_id, event.amount)

    @when(MoneyWithdrawn)
    def _withdrawn(self, event: MoneyWithdrawn, tx: ViewTransaction) -> None:
        self._change(tx, event.account_id, -event.amount)

    @staticmethod
    def _change(tx: ViewTransaction, account_id: str, amount: Decimal) -> None:
        view = tx.get("balances", account_id)
        assert view is not None
        view["balance"] = str(Decimal(view["balance"]) + amount)
        view["version"] = tx.record.stream_version
        tx.put("balances", account_id, view)


class GetBalance(Query[Decimal | None]):
    account_id: str


async def get_balance(query: GetBalance, views: ViewReader) -> Decimal | None:
    view = await views.get("balances", query.account_id)
    return None if view is None else Decimal(view["balance"])


def register(commands: CommandBus, queries: QueryBus) -> None:
    commands.register(OpenAccount, open_account)
    commands.register(Deposit, deposit)
    commands.register(Withdraw, withdraw)
    commands.register(Touch, touch)
    queries.register(GetBalance, get_balance, reads=("balances",))


BANK = Service(name="bank", register=register, projections=(Balances,))
