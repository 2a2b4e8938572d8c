"""The ViewCache port on Redis (redis-py, asyncio): every rule is one Lua script.

``RedisViewCache.open("redis://host:6379/0", settings)`` connects lazily: a Redis that is
down at start only means the first reads come from the read store. The scripts and the
key layout are described in ``_scripts``; notices travel on the pub/sub channel
``<namespace>:cache`` (published by the scripts themselves, so a notice never precedes the
change it reports).

Lookups made in the same turn of the event loop (concurrent requests) go to Redis as one
pipeline: one write and one read for all of them, which costs a fraction of a round trip
each (measured: 16 lookups in a pipeline take about a third of the CPU of 16 alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from twofold.adapters.redis import _scripts
from twofold.application.cache import (
    CacheNotice,
    CacheSettings,
    Entry,
    Invalidated,
    Invalidation,
    Listening,
    Lookup,
    Lost,
    Reset,
    Slot,
    StoreOutcome,
    Ticket,
)
from twofold.errors import ConfigurationError

__all__ = ["RedisViewCache", "settings_from_url"]

log = logging.getLogger("twofold.cache")

_OUTCOMES = {b"stored": StoreOutcome.STORED, b"older": StoreOutcome.OLDER}
RESET_WAIT = 0.5
"""Seconds a reset waits at most for the processes whose in-process caches heard it to
drop the projection's entries (a rebuild's switch follows the reset)."""
_documents = msgspec.json.Encoder()
_header = msgspec.json.Decoder(list[str | int])
_keys = msgspec.json.Decoder(dict[str, list[str]] | list[Any])


class RedisViewCache:
    """Entries in Redis under ``settings.namespace``; see ``twofold.application.cache``."""

    def __init__(self, client: redis.Redis, settings: CacheSettings, *, url: str = "") -> None:
        self.client = client
        self.settings = settings
        self.url = url
        self.channel = f"{settings.namespace}:cache"
        self._lookup = client.register_script(_scripts.LOOKUP)
        self._store = client.register_script(_scripts.STORE)
        self._invalidate = client.register_script(_scripts.INVALIDATE)
        self._reset = client.register_script(_scripts.RESET)
        self._epochs: dict[str, str] = {}
        self._ttl = _ms(settings.ttl)
        self._not_found_ttl = _ms(settings.not_found_ttl)
        self._tombstone_ttl = _ms(settings.tombstone_ttl)
        self._watcher: asyncio.Task[None] | None = None
        self._batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    @classmethod
    def open(cls, url: str, settings: CacheSettings | None = None) -> RedisViewCache:
        """A cache on the Redis at ``url`` (``redis://``, ``rediss://`` or ``unix://``)."""
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"cache URL {url!r} is not a Redis URL; use redis://host:port/db"
            )
        settings = settings if settings is not None else CacheSettings()
        # No read timeout on the socket: callers bound each call themselves (CachedViews and
        # CacheInvalidator use asyncio.timeout), which costs less per command than the
        # socket's timeout does on Python 3.11 (a task per read).
        client = redis.Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=settings.timeout,
            retry=Retry(NoBackoff(), 0),  # the breaker decides what happens next
        )
        return cls(client, settings, url=url)

    # -- keys -----------------------------------------------------------------------------

    def meta_key(self, projection: str) -> str:
        return f"{{{self.settings.namespace}:{projection}}}:meta"

    def slot_key(self, slot: Slot, epoch: str) -> str:
        kind = "l" if slot.is_list else "d"
        tag = f"{{{self.settings.namespace}:{slot.projection}}}"
        return f"{tag}:{epoch}:{kind}:{slot.collection}:{slot.key}"

    # -- the port -------------------------------------------------------------------------

    async def lookup(self, slot: Slot, *, epoch: str | None = None) -> Lookup:
        projection = slot.projection
        guess = epoch or self._epochs.get(projection, "")
        field = f"t:{slot.collection}" if slot.is_list else ""
        meta = self.meta_key(projection)
        for _ in range(3):
            reply = await self._batched(
                [meta, self.slot_key(slot, guess)], [guess, secrets.token_hex(6), field]
            )
            current = reply[0].decode()
            if current == guess:
                break
            guess = current
            self._epochs[projection] = current
        self._epochs[projection] = current
        ticket = Ticket(current, int(reply[1]), int(reply[2]))
        raw = reply[4] if current == guess else None
        return Lookup(slot, _entry(raw), ticket, int(reply[3]))

    def _batched(self, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """The LOOKUP script's reply, sent with the other lookups of this loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._batch.append((keys, args, future))
        if len(self._batch) == 1:
            loop.call_soon(self._send_batch)  # after the callbacks ready now: they may join
        return future

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._pipeline(batch)
            if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted
                await self.client.script_load(_scripts.LOOKUP)
                replies = await self._pipeline(batch)
        except asyncio.CancelledError:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(ConnectionError("the cache was closed"))
            raise
        except Exception as exc:
            replies = [exc] * len(batch)
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (timeout)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(
        self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        if len(batch) == 1:
            keys, args, _ = batch[0]
            try:
                return [await self.client.evalsha(self._lookup.sha, len(keys), *keys, *args)]
            except NoScriptError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self._lookup.sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def store(
        self, slot: Slot, entry: Entry, *, ticket: Ticket, generation: int
    ) -> StoreOutcome:
        if entry.body is None:
            payload, ttl = b"n%d:" % entry.position, self._not_found_ttl
        else:
            payload, ttl = b"v%d:" % entry.position + entry.body, self._ttl
        reply = await self._store(
            keys=[self.meta_key(slot.projection), self.slot_key(slot, ticket.epoch)],
            args=[
                ticket.epoch,
                str(generation),
                str(entry.position),
                payload,
                ttl,
                f"t:{slot.collection}" if slot.is_list else "",
            ],
        )
        return _OUTCOMES.get(reply, StoreOutcome.MOVED)

    async def invalidate(self, invalidation: Invalidation) -> None:
        projection = invalidation.projection
        pairs = [(c, k) for c, keys in invalidation.documents.items() for k in sorted(keys)]
        collections = sorted(invalidation.documents)
        documents = _documents.encode(
            {c: sorted(keys) for c, keys in invalidation.documents.items()}
        )
        guess = self._epochs.get(projection, "")
        for _ in range(3):
            reply = await self._invalidate(
                keys=[
                    self.meta_key(projection),
                    *(self.slot_key(Slot(projection, c, k), guess) for c, k in pairs),
                ],
                args=[
                    str(invalidation.generation),
                    str(invalidation.checkpoint),
                    secrets.token_hex(6),
                    self.channel,
                    projection,
                    guess,
                    str(invalidation.after),
                    self._tombstone_ttl,
                    documents,
                    len(collections),
                    *collections,
                ],
            )
            outcome, epoch = reply[0], reply[1].decode()
            self._epochs[projection] = epoch
            if outcome == b"reset" and int(reply[2]) > 0:
                await self._acknowledged(projection, epoch, int(reply[2]))
            if outcome != b"epoch":
                return
            guess = epoch
        # The epoch kept changing under us: abandoning the entries is always right.
        await self.reset(projection, invalidation.generation, invalidation.checkpoint)

    async def reset(
        self, projection: str, generation: int, checkpoint: int, *, force: bool = False
    ) -> None:
        reply = await self._reset(
            keys=[self.meta_key(projection)],
            args=[
                str(generation),
                str(checkpoint),
                secrets.token_hex(6),
                self.channel,
                projection,
                "1" if force else "0",
            ],
        )
        if reply[1] is not None:
            self._epochs[projection] = reply[1].decode()
        if reply[0] == b"reset" and int(reply[2]) > 0:
            await self._acknowledged(projection, reply[1].decode(), int(reply[2]))

    def ack_key(self, projection: str, epoch: str) -> str:
        return f"{{{self.settings.namespace}:{projection}}}:ack:{epoch}"

    async def _acknowledged(self, projection: str, epoch: str, heard: int) -> None:
        """Wait (up to ``RESET_WAIT`` seconds) until the ``heard`` processes whose
        in-process caches heard the reset have dropped the projection's entries: a reset
        comes before a switch, and no process may answer from the old copy after it."""
        key = self.ack_key(projection, epoch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESET_WAIT
        try:
            for done in range(heard):
                left = deadline - loop.time()
                popped = None
                if left > 0:
                    popped = await self.client.blpop([key], timeout=max(left, 0.01))
                if popped is None:
                    log.warning(
                        "%d of %d processes acknowledged the cache reset of %s within %.1f s; "
                        "going on (the others may answer from their in-process cache until "
                        "the notice reaches them)",
                        done,
                        heard,
                        projection,
                        RESET_WAIT,
                    )
                    return
        finally:
            await self.client.delete(key)

    async def _acknowledge(self, notice: Reset) -> None:
        """Tell the resetting process that this one dropped the projection's entries."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                key = self.ack_key(notice.projection, notice.epoch)
                pipe.rpush(key, b"1")
                pipe.pexpire(key, _ms(RESET_WAIT * 4))
                await pipe.execute()
        except Exception as exc:  # the resetting process stops waiting at its deadline
            log.info("cannot acknowledge the cache reset of %s: %s", notice.projection, exc)

    async def watch(self, notify: Callable[[CacheNotice], None]) -> None:
        if self._watcher is not None:
            raise RuntimeError("this cache is watched already; one watcher per cache")
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch(notify), name="twofold-cache-notices"
        )

    async def _watch(self, notify: Callable[[CacheNotice], None]) -> None:
        delay = 0.05
        while True:
            client = self._notices_client()
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "subscribe":
                        delay = 0.05
                        notify(Listening())
                    elif kind == "message":
                        notice = _notice(message["data"])
                        if notice is not None:
                            notify(notice)
                            if isinstance(notice, Reset):
                                await self._acknowledge(notice)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("cache notices interrupted (%s); reconnecting", exc)
            finally:
                notify(Lost())
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)  # backoff before reconnecting
            delay = min(delay * 2, 2.0)

    def _notices_client(self) -> redis.Redis:
        """A client like ours without a read timeout: notices may be rare."""
        pool = self.client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None, "socket_keepalive": True}
        return redis.Redis.from_pool(
            redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self.client.aclose()


_URL_OPTIONS = {
    "namespace": str,
    "ttl": float,
    "not_found_ttl": float,
    "tombstone_ttl": float,
    "timeout": float,
    "failure_threshold": int,
    "reset_after": float,
    "local_entries": int,
}


def settings_from_url(url: str) -> tuple[str, CacheSettings]:
    """``(Redis URL, settings)`` from a ``TWOFOLD_CACHE`` URL whose query holds twofold's
    options: ``redis://host:6379/0?namespace=shop&ttl=300&local_entries=10000&lists=a,b``.
    Other query parameters stay in the Redis URL (redis-py's own); an option that is not
    understood is refused, never ignored."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"TWOFOLD_CACHE {url!r} is not a Redis URL; use redis://host:6379/0"
        )
    options: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "lists":
            options["lists"] = frozenset(v for v in value.split(",") if v)
        elif key in _URL_OPTIONS:
            try:
                options[key] = _URL_OPTIONS[key](value)
            except ValueError:
                raise ConfigurationError(
                    f"TWOFOLD_CACHE option {key}={value!r} must be "
                    f"{'a whole number' if _URL_OPTIONS[key] is int else 'a number'}"
                ) from None
        elif key.startswith(("socket_", "health_", "ssl_", "client_", "protocol", "db")):
            rest.append((key, value))
        else:
            known = ", ".join(sorted([*_URL_OPTIONS, "lists"]))
            raise ConfigurationError(
                f"TWOFOLD_CACHE option {key!r} is not understood; twofold's options: {known}"
            )
    return urlunsplit(parts._replace(query=urlencode(rest))), CacheSettings(**options)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _entry(raw: bytes | None) -> Entry | None:
    if not raw or raw[:1] == b"t":
        return None
    end = raw.index(b":", 1)
    position = int(raw[1:end])
    return Entry(None if raw[:1] == b"n" else raw[end + 1 :], position)


def _notice(data: bytes) -> CacheNotice | None:
    head, _, rest = data.partition(b"\n")
    try:
        fields = _header.decode(head)
        if fields[0] == "reset":
            return Reset(str(fields[1]), str(fields[2]), int(fields[3]), int(fields[4]))
        if fields[0] == "inv":
            keys = _keys.decode(rest) if rest else {}
            documents = {c: frozenset(k) for c, k in keys.items()} if isinstance(keys, dict) else {}
            return Invalidated(
                str(fields[1]), str(fields[2]), int(fields[3]), int(fields[4]), documents
            )
    except (msgspec.DecodeError, IndexError, ValueError):
        log.warning("ignored a cache notice that is not twofold's: %r", data[:80])
    return None
