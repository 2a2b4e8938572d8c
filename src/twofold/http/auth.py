"""API keys with scopes: separate policies for the write side and the read side (seed 004).

A request names its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
Commands need the ``commands`` scope, queries ``queries``; ``admin`` is for operations.
Without a valid key: 401; with a key that lacks the scope: 403.

Keys are looked up by their SHA-256 digest, so the lookup time does not depend on how much
of a wrong key matches a right one, and the plain keys are not kept in memory past start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from twofold.http.problems import ProblemError, problem

__all__ = ["ApiKeys", "Principal"]


class Principal:
    """Who a request is: a key's short fingerprint (never the key) and its scopes."""

    __slots__ = ("fingerprint", "scopes")

    def __init__(self, fingerprint: str, scopes: frozenset[str]) -> None:
        self.fingerprint = fingerprint
        self.scopes = scopes


class ApiKeys:
    """The configured keys; ``check`` returns the caller or raises a 401/403 problem."""

    def __init__(self, keys: Mapping[str, frozenset[str]]) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        for key, scopes in keys.items():
            digest = hashlib.sha256(key.encode()).digest()
            self._by_digest[digest] = Principal("key:" + digest.hex()[:12], frozenset(scopes))

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def check(self, authorization: bytes | None, api_key: bytes | None, scope: str) -> Principal:
        presented = api_key
        if presented is None and authorization is not None:
            kind, _, token = authorization.partition(b" ")
            if kind.lower() == b"bearer":
                presented = token.strip()
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
                    f"the API key lacks the {scope!r} scope this route needs; "
                    f"it has: {', '.join(sorted(principal.scopes))}",
                )
            )
        return principal


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        problem(401, "unauthorized", "Unauthorized", detail),
        headers=[(b"www-authenticate", b'Bearer realm="twofold"')],
    )
