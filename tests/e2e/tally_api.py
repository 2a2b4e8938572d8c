"""A user's service whose projection keeps a record of every time it applied an event.

Each application of a ``Ticked`` event adds a document of its own (a fresh key), so a
position applied twice, by two runners or twice by one, shows as two documents: nothing is
overwritten, nothing merged. ``GET /applications`` lists them all. Served as user services
are: ``twofold serve tests.e2e.tally_api:api`` and ``twofold worker tests.e2e.tally_api:api``.
"""

from __future__ import annotations

import os
import uuid

import msgspec

from twofold import (
    Aggregate,
    Collection,
    Command,
    CommandBus,
    CommandContext,
    Event,
    Projection,
    Query,
    QueryBus,
    Service,
    ViewReader,
    ViewTransaction,
    when,
)
from twofold.http import Call, HttpApi


class Ticked(Event):
    tick_id: str


class Ticker(Aggregate):
    def tick(self) -> None:
        self.record(Ticked(tick_id=self.id))

    @when(Ticked)
    def _ticked(self, event: Ticked) -> None:
        pass


class Tick(Command):
    tick_id: str


async def tick(command: Tick, ctx: CommandContext) -> None:
    ctx.create(Ticker, command.tick_id).tick()


class Applications(Projection):
    name = "applications"
    collections = (Collection("applications", indexes={"position": int}),)

    @when(Ticked)
    def _ticked(self, event: Ticked, tx: ViewTransaction) -> None:
        position = tx.record.position
        tx.put("applications", f"{position}-{uuid.uuid4().hex}",
               {"position": position, "process_id": os.getpid()})  # fmt: skip


class Application(msgspec.Struct):
    position: int
    process_id: int


class ListApplications(Query[list[Application]]):
    pass


async def list_applications(query: ListApplications, views: ViewReader) -> list[Application]:
    documents = await views.find("applications", order_by=[("position", "asc")])
    return [Application(position=d["position"], process_id=d["process_id"]) for d in documents]


def register(commands: CommandBus, queries: QueryBus) -> None:
    commands.register(Tick, tick)
    queries.register(ListApplications, list_applications, reads=("applications",))


TALLY = Service(name="tally", register=register, projections=(Applications,))
api = HttpApi(TALLY, title="Tally", version="1.0")


@api.command("/ticks", status=201)
def post_tick(body: None, call: Call) -> Tick:
    """Record one tick, in a stream of its own."""
    return Tick(tick_id=call.new_id())


@api.query("/applications", response=list[Application])
def get_applications(params: None, call: Call) -> ListApplications:
    """Every application of a tick by the projection, in position order."""
    return ListApplications()
