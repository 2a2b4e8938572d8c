"""twofold: CQRS with event sourcing for Python.

Commands change state by recording events; projections fold those events into views;
queries answer from the views, and can wait for a client's own write to show.
"""

from twofold.application.app import App, Service
from twofold.application.commands import CommandBus, CommandContext, CommandResult
from twofold.application.operations import Operations, ProjectionReport
from twofold.application.positions import PositionTracker
from twofold.application.projections import Projection
from twofold.application.queries import QueryBus
from twofold.application.repository import Repository
from twofold.application.runner import ProjectionRunner
from twofold.application.verify import VerifyReport
from twofold.application.views import (
    Collection,
    DeadLetter,
    ProjectionState,
    ProjectionStatus,
    SortBy,
    ViewReader,
    ViewTransaction,
)
from twofold.bootstrap import bootstrap
from twofold.codec import Codec
from twofold.domain.aggregate import Aggregate, when
from twofold.domain.messages import Command, Event, Metadata, Query, id_problem
from twofold.errors import (
    AggregateExistsError,
    AggregateNotFoundError,
    ConcurrencyError,
    ConsistencyTimeoutError,
    DomainRuleError,
    ForeignViewsError,
    PositionBeyondHeadError,
    TwofoldError,
    ValidationError,
)
from twofold.records import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamInfo,
    uuid7,
)
from twofold.settings import Settings

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "Aggregate",
    "AggregateExistsError",
    "AggregateNotFoundError",
    "App",
    "AppendResult",
    "Codec",
    "Collection",
    "Command",
    "CommandBus",
    "CommandContext",
    "CommandResult",
    "ConcurrencyError",
    "ConsistencyTimeoutError",
    "DeadLetter",
    "DomainRuleError",
    "Event",
    "ForeignViewsError",
    "Metadata",
    "NewEvent",
    "Operations",
    "PositionBeyondHeadError",
    "PositionTracker",
    "Projection",
    "ProjectionReport",
    "ProjectionRunner",
    "ProjectionState",
    "ProjectionStatus",
    "Query",
    "QueryBus",
    "RecordedEvent",
    "Repository",
    "Service",
    "Settings",
    "Snapshot",
    "SortBy",
    "StreamAppend",
    "StreamInfo",
    "TwofoldError",
    "ValidationError",
    "VerifyReport",
    "ViewReader",
    "ViewTransaction",
    "bootstrap",
    "id_problem",
    "uuid7",
    "when",
]
