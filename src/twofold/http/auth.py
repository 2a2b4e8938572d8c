"""API keys with scopes: separate policies for the write side and the read side (seed 004).

A request names its key as ``Authorization: Bearer <secret>`` or ``X-API-Key: <secret>``;
both at once with different secrets is ambiguous and refused (400). Commands need the
``commands`` scope, queries ``queries``; ``admin`` is for operations; ``metrics`` reads
``GET /metrics`` only (``admin`` includes it). Without a valid key: 401; with a key that
lacks the scope: 403.

Keys are looked up by their SHA-256 digest, so the lookup time does not depend on how much
of a wrong key matches a right one, and the plain secrets are not kept in memory past
start. A caller is known by its key's configured name (``Principal.name``), which events
record as their actor: nothing derived from the secret leaves this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from twofold.http.problems import ProblemError, problem
from twofold.settings import ApiKey

__all__ = ["ApiKeys", "Principal"]

_INCLUDED_IN_ADMIN = frozenset({"metrics"})
"""Scopes an ``admin`` key has too: who may operate the service may watch it."""


class Principal:
    """Who a request is: its key's name (never the secret) and the key's scopes."""

    __slots__ = ("name", "scopes")

    def __init__(self, name: str, scopes: frozenset[str]) -> None:
        self.name = name
        self.scopes = scopes


class ApiKeys:
    """The configured keys; ``check`` returns the caller or raises a 400/401/403 problem."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        for key in keys:
            digest = hashlib.sha256(key.secret.encode()).digest()
            scopes = frozenset(key.scopes)
            if "admin" in scopes:
                scopes |= _INCLUDED_IN_ADMIN
            self._by_digest[digest] = Principal(key.name, scopes)

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def check(self, authorization: bytes | None, api_key: bytes | None, scope: str) -> Principal:
        bearer = None
        if authorization is not None:
            kind, _, token = authorization.partition(b" ")
            if kind.lower() == b"bearer":
                bearer = token.strip()
        presented = api_key.strip() if api_key is not None else None
        presented = presented or None  # an empty header names no key
        if bearer is not None and presented is not None and bearer != presented:
            raise ProblemError(
                problem(
                    400,
                    "ambiguous-credentials",
                    "Ambiguous credentials",
                    "the request names two different API keys, in 'Authorization: Bearer' "
                    "and in 'X-API-Key'; send one of them",
                )
            )
        presented = presented or bearer
        if not presented:
            raise _unauthorized("this API needs a key: send 'Authorization: Bearer <key>'")
        principal = self._by_digest.get(hashlib.sha256(presented).digest())
        if principal is None:
            raise _unauthorized("the API key is not valid")
        if scope not in principal.scopes:
            raise ProblemError(
                problem(
                    403,
                    "forbidden",
                    "Forbidden",
                    f"the API key {principal.name!r} lacks the {scope!r} scope this route "
                    f"needs; it has: {', '.join(sorted(principal.scopes))}",
                )
            )
        return principal


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        problem(401, "unauthorized", "Unauthorized", detail),
        headers=[(b"www-authenticate", b'Bearer realm="twofold"')],
    )
