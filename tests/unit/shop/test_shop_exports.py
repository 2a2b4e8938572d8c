from __future__ import annotations

import inspect

from twofold.domain.messages import Event
from twofold.examples import shop
from twofold.examples.shop.domain import events


def test_all_is_sorted_and_complete() -> None:
    assert list(shop.__all__) == sorted(shop.__all__, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(shop, name) for name in shop.__all__)


def test_events_lists_every_event_class_once() -> None:
    defined = {
        cls
        for _, cls in inspect.getmembers(events, inspect.isclass)
        if issubclass(cls, Event) and cls is not Event
    }
    assert set(shop.EVENTS) == defined
    names = [cls.__event_type__ for cls in shop.EVENTS]
    assert len(names) == len(set(names))


def test_projections_have_distinct_names_and_collections() -> None:
    names = [p.name for p in shop.PROJECTIONS]
    collections = [c.name for p in shop.PROJECTIONS for c in p.collections]
    assert len(names) == len(set(names))
    assert len(collections) == len(set(collections))
