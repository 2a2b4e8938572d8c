"""What ``twofold serve`` runs in each worker: ``app_factory`` (for ``uvicorn --factory``).

The target comes from ``TWOFOLD_APP`` (``module:attribute``; default: the reference shop)
and may be an ``HttpApi``, any ASGI app, or a function of no arguments returning either.
Each worker process imports and builds it on its own, so nothing is shared but the stores.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from twofold.errors import ConfigurationError
from twofold.http.api import HttpApi

__all__ = ["DEFAULT_APP", "app_factory", "load_target", "resolve"]

DEFAULT_APP = "twofold.examples.shop.http:api"


def load_target(spec: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"{spec!r} is not module:attribute, such as myapp:app or myapp.web:create_app"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigurationError(
            f"cannot import {module_name!r} ({error}); run from the folder that holds it, "
            "or install it"
        ) from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from None
    return target


def resolve(target: Any, spec: str = "app") -> Any:
    """The ASGI app ``target`` stands for: an HttpApi's app, an ASGI app, a factory's result."""
    for _ in range(3):
        if isinstance(target, HttpApi):
            return target.asgi()
        if _is_asgi(target):
            return target
        if callable(target) and not inspect.signature(target).parameters:
            target = target()
            continue
        break
    raise ConfigurationError(
        f"{spec} is neither an HttpApi, an ASGI app, nor a function of no arguments returning one"
    )


def _is_asgi(target: Any) -> bool:
    call = target if inspect.isfunction(target) else getattr(target, "__call__", None)  # noqa: B004
    if call is None or isinstance(target, type):
        return False
    try:
        return len(inspect.signature(call).parameters) == 3
    except (TypeError, ValueError):
        return False


def app_factory() -> Any:
    spec = os.environ.get("TWOFOLD_APP") or DEFAULT_APP
    return resolve(load_target(spec), spec)
