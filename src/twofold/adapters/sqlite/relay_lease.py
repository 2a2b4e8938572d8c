"""The relay's lease on one host: an exclusive ``flock`` on a file next to the event store.

One lock file per destination (``<events.db>.relay-<digest>.lock``, the digest of the
destination's name): the process holding it relays to that destination; the others try
again every ``retry_interval`` seconds. The kernel drops the lock with the holder's last
file descriptor, so a process that dies, even by SIGKILL, frees it at once, and a waiting
process takes over within the interval, from the checkpoint the last one stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

__all__ = ["FileRelayLease", "relay_lock_path"]


def relay_lock_path(events_path: str, destination: str) -> Path:
    store = Path(events_path).resolve()
    digest = hashlib.sha256(destination.encode()).hexdigest()[:16]
    return store.with_name(f"{store.name}.relay-{digest}.lock")


class FileRelayLease:
    """The lease on relaying ``destination`` from the SQLite event store at ``events_path``."""

    def __init__(self, events_path: str, destination: str, *, retry_interval: float = 1.0) -> None:
        self.path = relay_lock_path(events_path, destination)
        self.destination = destination
        self.retry_interval = retry_interval
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.destination}\n".encode())  # who relays, for people
        self._fd = fd
        return True

    async def acquire(self) -> None:
        # flock announces no release that an event loop can wait for: look again.
        while not self.try_acquire():  # noqa: ASYNC110
            await asyncio.sleep(self.retry_interval)

    async def lost(self) -> None:
        await asyncio.Event().wait()  # a held flock is lost only with the process

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
