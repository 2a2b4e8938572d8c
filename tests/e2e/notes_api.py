"""A user's service whose view documents name the projection code that wrote them.

Each note's document carries ``edition``: the value of ``NOTES_EDITION`` in the process
that applied the event (default "1"). A rebuild run with another edition rewrites every
document, so a read that still shows the old edition was served from the old copy.
Served as user services are: ``twofold serve tests.e2e.notes_api:api``.
"""

from __future__ import annotations

import os

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


class NoteWritten(Event):
    note_id: str
    text: str


class Note(Aggregate):
    def write(self, text: str) -> None:
        self.record(NoteWritten(note_id=self.id, text=text))

    @when(NoteWritten)
    def _written(self, event: NoteWritten) -> None:
        pass


class WriteNote(Command):
    note_id: str
    text: str


async def write_note(command: WriteNote, ctx: CommandContext) -> None:
    if await ctx.exists(Note, command.note_id):
        note = await ctx.load(Note, command.note_id)
    else:
        note = ctx.create(Note, command.note_id)
    note.write(command.text)


def edition() -> str:
    return os.environ.get("NOTES_EDITION", "1")


class Notes(Projection):
    name = "notes"
    collections = (Collection("notes"),)

    @when(NoteWritten)
    def _written(self, event: NoteWritten, tx: ViewTransaction) -> None:
        before = tx.get("notes", event.note_id)
        writes = 1 if before is None else int(before["writes"]) + 1
        tx.put(
            "notes",
            event.note_id,
            {"note_id": event.note_id, "text": event.text, "writes": writes, "edition": edition()},
        )


class NoteView(msgspec.Struct):
    note_id: str
    text: str
    writes: int
    edition: str


class GetNote(Query[NoteView | None]):
    note_id: str


async def get_note(query: GetNote, views: ViewReader) -> NoteView | None:
    document = await views.get("notes", query.note_id)
    return None if document is None else msgspec.convert(document, NoteView)


async def get_note_json(query: GetNote, views: ViewReader) -> bytes | None:
    return await views.get_json("notes", query.note_id)


def register(commands: CommandBus, queries: QueryBus) -> None:
    commands.register(WriteNote, write_note)
    queries.register(GetNote, get_note, reads=("notes",), json=get_note_json)


NOTES = Service(name="notes", register=register, projections=(Notes,))
api = HttpApi(NOTES, title="Notes", version="1.0")


class NoteBody(msgspec.Struct):
    text: str


class NotePath(msgspec.Struct):
    note_id: str


@api.command("/notes/{note_id}", body=NoteBody, method="PUT")
def put_note(body: NoteBody, call: Call) -> WriteNote:
    """Write a note (created on its first write)."""
    return WriteNote(note_id=call.path["note_id"], text=body.text)


@api.query("/notes/{note_id}", params=NotePath, response=NoteView)
def get_note_route(params: NotePath, call: Call) -> GetNote:
    """One note, as its view holds it."""
    return GetNote(note_id=params.note_id)
