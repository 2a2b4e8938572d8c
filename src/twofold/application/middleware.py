"""Command middleware: validation, idempotency keys, and bounded retry on conflicts.

The usual order, outermost first: validation, idempotency, retry (``default_middleware``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Sequence

import msgspec

from twofold.application.commands import (
    CommandEnvelope,
    CommandResult,
    IdempotencyClaim,
    Middleware,
    Next,
)
from twofold.application.ports import IdempotencyStore
from twofold.codec import encode_json
from twofold.domain.messages import unstorable_text
from twofold.errors import (
    CommandError,
    ConcurrencyError,
    ConfigurationError,
    IdempotencyKeyReusedError,
    IdempotencyKeyTakenError,
    ValidationError,
)

__all__ = ["IdempotencyMiddleware", "RetryMiddleware", "default_middleware", "validate"]

_result_decoder = msgspec.json.Decoder(CommandResult)


async def validate(envelope: CommandEnvelope, call_next: Next) -> CommandResult:
    """Refuse text no backend can store (in the command, its metadata and its key), then run
    the command's own ``validate``; either raises ValidationError before any handler runs."""
    problems = unstorable_text(envelope.command)
    problems.update(unstorable_text(envelope.metadata, "metadata"))
    if envelope.idempotency_key is not None:
        problems.update(unstorable_text(envelope.idempotency_key, "idempotency_key"))
    if problems:
        raise ValidationError(problems)
    envelope.command.validate()
    return await call_next(envelope)


class IdempotencyMiddleware:
    """The same key returns the first result and records nothing new.

    Keys are scoped per caller (``metadata.actor``; over HTTP, the API key; none is
    "anonymous") and per command type, as Stripe scopes them per account: another caller's
    key never returns someone else's answer. Within its scope, the key is bound to a
    fingerprint of the command (its type and fields); the same key with a different command
    raises IdempotencyKeyReusedError. The key and its answer are stored with the command's
    events, in the append's own transaction, so a crash never keeps events without the
    answer a retry needs (a command that records nothing stores its answer after it ran).
    Commands refused with an error store nothing under the key, so a corrected retry may
    use it again.
    """

    def __init__(self, store: IdempotencyStore) -> None:
        self.store = store
        self._locks: dict[str, asyncio.Lock] = {}

    async def __call__(self, envelope: CommandEnvelope, call_next: Next) -> CommandResult:
        key = envelope.idempotency_key
        if key is None:
            return await call_next(envelope)
        if not key or len(key) > 255:
            raise ValidationError({"idempotency_key": "must be 1 to 255 characters"})
        fingerprint = self.fingerprint(envelope)
        scoped = self.scoped_key(envelope)
        # One run per key at a time in this process; across processes the store decides.
        lock = self._locks.setdefault(scoped, asyncio.Lock())
        try:
            async with lock:
                stored = await self.store.get(scoped)
                if stored is not None:
                    return self._replay(key, fingerprint, stored)
                claim = IdempotencyClaim(scoped, fingerprint, self.store.keep_for)
                envelope.idempotency = claim
                try:
                    result = await call_next(envelope)
                except (CommandError, ConcurrencyError, IdempotencyKeyTakenError) as exc:
                    # Another process may have run the same command first.
                    stored = await self.store.get(scoped)
                    if stored is not None:
                        return self._replay(key, fingerprint, stored)
                    if isinstance(exc, IdempotencyKeyTakenError):
                        raise ConfigurationError(
                            "the event store keeps idempotency keys that the idempotency "
                            "store does not see; build the idempotency store on the event "
                            "store (e.g. SQLiteIdempotencyStore(store))"
                        ) from exc
                    raise
                finally:
                    envelope.idempotency = None
                if claim.stored:
                    return result  # the key went in with the events
                kept = await self.store.put(scoped, fingerprint, encode_json(result))
                if kept[0] != fingerprint or kept[1] != encode_json(result):
                    return self._replay(key, fingerprint, kept)
                return result
        finally:
            if not lock.locked() and self._locks.get(scoped) is lock:
                del self._locks[scoped]

    @staticmethod
    def scoped_key(envelope: CommandEnvelope) -> str:
        """The key as stored: the caller's, for this command type."""
        caller = envelope.metadata.actor or "anonymous"
        command = type(envelope.command).__qualname__
        return encode_json([caller, command, envelope.idempotency_key]).decode()

    @staticmethod
    def fingerprint(envelope: CommandEnvelope) -> str:
        command = envelope.command
        digest = hashlib.sha256(type(command).__qualname__.encode())
        digest.update(encode_json(command))
        if envelope.expected_version is not None:
            digest.update(b"@%d" % envelope.expected_version)
        return digest.hexdigest()

    @staticmethod
    def _replay(key: str, fingerprint: str, stored: tuple[str, bytes]) -> CommandResult:
        if stored[0] != fingerprint:
            raise IdempotencyKeyReusedError(key)
        first = _result_decoder.decode(stored[1])
        return msgspec.structs.replace(first, replayed=True)


class RetryMiddleware:
    """Re-run the handler (which reloads the aggregate) when a concurrent writer won.

    Bounded: after ``attempts`` tries the ConcurrencyError goes to the caller. A version
    the client asked for (If-Match) is never retried: the client must look again.
    """

    def __init__(self, attempts: int = 4, *, base_delay: float = 0.002) -> None:
        if attempts < 1:
            raise ValueError("attempts must be 1 or more")
        self.attempts = attempts
        self.base_delay = base_delay

    async def __call__(self, envelope: CommandEnvelope, call_next: Next) -> CommandResult:
        for attempt in range(1, self.attempts + 1):
            try:
                return await call_next(envelope)
            except ConcurrencyError:
                if envelope.expected_version is not None or attempt == self.attempts:
                    raise
            # Jittered exponential backoff spreads out writers racing for one stream.
            await asyncio.sleep(self.base_delay * (2 ** (attempt - 1)) * random.random())
        raise AssertionError("unreachable")  # pragma: no cover


def default_middleware(
    idempotency: IdempotencyStore | None = None, *, retry_attempts: int = 4
) -> Sequence[Middleware]:
    """Validation, then idempotency (when a store is given), then retry on conflicts."""
    chain: list[Middleware] = [validate]
    if idempotency is not None:
        chain.append(IdempotencyMiddleware(idempotency))
    chain.append(RetryMiddleware(retry_attempts))
    return chain
