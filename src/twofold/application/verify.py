"""Verify: do the live views equal a fresh replay of the log?

For one projection: read the live copy (its documents and checkpoint C, in one snapshot),
replay the log up to C into a scratch copy (a new generation that is never made active),
read it, drop it, and compare collection by collection: documents the replay has and the
live copy lacks (missing), documents only the live copy has (extra), and documents that
differ, with their first differences field by field. Comparing at C, not at the head,
makes the answer exact while the projection keeps running.

Both copies are held in memory while compared: verify is an operator's tool, and its
memory grows with the projection's views.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from twofold.errors import GenerationChangedError

if TYPE_CHECKING:
    from twofold.application.runner import ProjectionRunner

__all__ = [
    "CollectionReport",
    "DocumentDifference",
    "FieldDifference",
    "ProjectionVerification",
    "VerifyReport",
    "compare_documents",
    "verify_projection",
]

SAMPLES = 10
"""Documents listed per kind of divergence (all are counted)."""
FIELDS = 10
"""Field differences listed per differing document."""
_MISSING_VALUE = "<absent>"


class FieldDifference(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    """Where in the document: ``total``, ``lines[2].qty``, ``address.city``."""
    live: Any
    """The live copy's value (``"<absent>"`` when it has none)."""
    expected: Any
    """The replay's value (``"<absent>"`` when it has none)."""


class DocumentDifference(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    fields: list[FieldDifference]
    """The first differences, at most FIELDS."""


class CollectionReport(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    documents: int
    """Documents in the replay."""
    missing: int = 0
    """Documents the replay has and the live copy lacks."""
    extra: int = 0
    """Documents the live copy has and the replay does not."""
    different: int = 0
    missing_keys: list[str] = msgspec.field(default_factory=list)
    extra_keys: list[str] = msgspec.field(default_factory=list)
    differences: list[DocumentDifference] = msgspec.field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.extra or self.different)


class ProjectionVerification(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    position: int
    """The live checkpoint both copies were compared at."""
    consistent: bool
    collections: list[CollectionReport]
    error: str | None = None
    """Why it could not be verified (then ``consistent`` is False)."""

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.name}: not verified: {self.error}"
        if self.consistent:
            return f"{self.name}: consistent at position {self.position}"
        parts = [
            f"{c.name}: {c.missing} missing, {c.extra} extra, {c.different} different"
            for c in self.collections
            if not c.consistent
        ]
        return f"{self.name} diverges at position {self.position}: " + "; ".join(parts)


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    checked_at: datetime
    projections: list[ProjectionVerification]

    @property
    def consistent(self) -> bool:
        return all(p.consistent for p in self.projections)


async def verify_projection(runner: ProjectionRunner) -> ProjectionVerification:
    """Compare ``runner``'s live views with a replay of the log into a scratch copy."""
    name = runner.name
    store = runner.read_store
    for _ in range(3):  # a rebuild or reset switching copies meanwhile: start again
        live = await store.read_copy(name)
        try:
            scratch = await runner.replay_scratch(until=live.checkpoint)
        except GenerationChangedError:
            continue
        except Exception as error:
            return ProjectionVerification(
                name=name,
                position=live.checkpoint,
                consistent=False,
                collections=[],
                error=f"the replay failed: {type(error).__name__}: {error}",
            )
        collections = [
            compare_collection(c.name, live.documents.get(c.name, {}), scratch.get(c.name, {}))
            for c in runner.projection.collections
        ]
        return ProjectionVerification(
            name=name,
            position=live.checkpoint,
            consistent=all(c.consistent for c in collections),
            collections=collections,
        )
    return ProjectionVerification(
        name=name,
        position=0,
        consistent=False,
        collections=[],
        error="the views were switched (rebuild or reset) during each of 3 tries; run it again",
    )


def compare_collection(
    name: str, live: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> CollectionReport:
    missing = sorted(expected.keys() - live.keys())
    extra = sorted(live.keys() - expected.keys())
    differences: list[DocumentDifference] = []
    different = 0
    for key in sorted(expected.keys() & live.keys()):
        if live[key] == expected[key] and _same_types(live[key], expected[key]):
            continue
        fields = compare_documents(live[key], expected[key])
        if not fields:
            continue
        different += 1
        if len(differences) < SAMPLES:
            differences.append(DocumentDifference(key=key, fields=fields[:FIELDS]))
    return CollectionReport(
        name=name,
        documents=len(expected),
        missing=len(missing),
        extra=len(extra),
        different=different,
        missing_keys=missing[:SAMPLES],
        extra_keys=extra[:SAMPLES],
        differences=differences,
    )


def compare_documents(live: Any, expected: Any, path: str = "") -> list[FieldDifference]:
    """The differences between two JSON values, field by field, in field order."""
    absent = _MISSING_VALUE
    if isinstance(live, dict) and isinstance(expected, dict):
        found: list[FieldDifference] = []
        for field in [*expected, *(k for k in live if k not in expected)]:
            where = f"{path}.{field}" if path else str(field)
            if field not in live:
                found.append(FieldDifference(path=where, live=absent, expected=expected[field]))
            elif field not in expected:
                found.append(FieldDifference(path=where, live=live[field], expected=absent))
            else:
                found.extend(compare_documents(live[field], expected[field], where))
        return found
    if isinstance(live, list) and isinstance(expected, list):
        found = []
        for index in range(max(len(live), len(expected))):
            where = f"{path}[{index}]"
            if index >= len(live):
                found.append(FieldDifference(path=where, live=absent, expected=expected[index]))
            elif index >= len(expected):
                found.append(FieldDifference(path=where, live=live[index], expected=absent))
            else:
                found.extend(compare_documents(live[index], expected[index], where))
        return found
    if live == expected and type(live) is type(expected):
        return []
    return [FieldDifference(path=path or "(document)", live=live, expected=expected)]


def _same_types(a: Any, b: Any) -> bool:
    """``1 == 1.0 == True`` in Python; in a view they are different values."""
    if isinstance(a, dict):
        return all(_same_types(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b)
