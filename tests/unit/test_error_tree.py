"""The error tree drawn in twofold.errors names every error twofold defines."""

from __future__ import annotations

import importlib
import pkgutil

import twofold
from twofold import errors
from twofold.application.relay import errors as relay_errors


def every_error() -> set[type[errors.TwofoldError]]:
    for module in pkgutil.walk_packages(twofold.__path__, "twofold."):
        if ".examples." not in module.name:  # an app's own errors are its own
            importlib.import_module(module.name)
    found: set[type[errors.TwofoldError]] = set()
    pending = [errors.TwofoldError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.startswith("twofold.") and ".examples." not in sub.__module__:
                found.add(sub)
            pending.append(sub)
    return found


def test_every_error_is_drawn_in_the_tree() -> None:
    drawn = errors.__doc__ or ""
    relay_drawn = relay_errors.__doc__ or ""
    missing = sorted(
        error.__name__
        for error in every_error()
        if error.__name__ not in drawn
        and not (issubclass(error, relay_errors.RelayError) and error.__name__ in relay_drawn)
    )
    assert missing == [], f"errors.py's tree lacks {missing}"


def test_the_http_problem_error_sits_under_the_root() -> None:
    from twofold.http.problems import ProblemError

    assert issubclass(ProblemError, errors.TwofoldError)
