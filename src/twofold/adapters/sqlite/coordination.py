"""Coordination on one host: processes sharing a SQLite read store; one runs the projections.

Every worker process appends to the event store itself (the store is multi-process safe).
Projections are different: two runners on one read store would apply events twice. So:

- **One runner process.** Each process that may run projections tries an exclusive
  ``flock`` on a lock file next to the read store. The holder runs every projection; the
  others retry every ``retry_interval`` seconds, so when the holder dies (the kernel drops
  its lock with its last file descriptor) another process takes over within that time.
  The new holder reloads each checkpoint before running: it goes on where the last
  commit of the old one left off, and never applies an event twice.
- **Woken, not polling.** Each process binds a Unix datagram socket in a run folder. After
  every commit, the holder sends one byte to every other process's socket; a woken process
  reads the checkpoints from the read store (``read_store.states()``) and advances its
  ``PositionTracker``, which releases the queries waiting for ``min_position``. Datagrams
  may be lost (a full queue, a process starting); a slow poll (``poll_interval``) is the
  safety net, never the mechanism.

The lock is host-local (``flock``): processes on other hosts need another lease (such as
PostgreSQL advisory locks) and are not covered here. ``twofold serve`` (any number of
workers), ``twofold worker`` and a library user's ``bootstrap(...)`` on one SQLite file all
take part the same way: ``bootstrap`` gives each App a ``FileLockCoordination``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import Any

from twofold.application.app import App
from twofold.application.commands import CommandEnvelope, CommandResult, Next
from twofold.application.runner import ProjectionRunner
from twofold.errors import ConfigurationError

__all__ = ["FileLockCoordination", "coordination_paths"]

log = logging.getLogger("twofold.coordination")

_COMMITTED = b"!"  # the leader committed a projection batch: read the checkpoints
_APPENDED = b"a"  # a process appended events: the leader's runners should look
_PEERS_TTL = 1.0  # seconds a listing of the run folder is reused when broadcasting


def coordination_paths(path: str) -> tuple[Path, Path]:
    """(lock file, run folder) of the SQLite read store at ``path`` (a file)."""
    store = Path(path).resolve()
    lock = store.with_name(store.name + ".projections.lock")
    # Socket paths are limited to about 100 bytes: keep the folder short, keyed by store.
    digest = hashlib.sha256(str(store).encode()).hexdigest()[:16]
    return lock, Path(tempfile.gettempdir()) / f"twofold-{digest}"


class FileLockCoordination:
    """One process's part: contend for the projections, and follow the positions."""

    shared = True
    app: App  # set by start

    def __init__(
        self,
        path: str,
        *,
        retry_interval: float = 1.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.lock_path, self.run_dir = coordination_paths(path)
        self.contend = False
        self.retry_interval = retry_interval
        self.poll_interval = poll_interval
        self.leader = False
        self._unlisten: Callable[[], None] | None = None
        self._lock_fd: int | None = None
        self._sock: socket.socket | None = None
        self._sock_path = self.run_dir / f"{os.getpid()}-{id(self):x}.sock"
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._appended = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._peers: list[str] = []
        self._peers_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, app: App, *, run: Collection[str]) -> None:
        """Follow the checkpoints; when ``run`` names the projections, contend for them."""
        missing = sorted(set(app.runners) - set(run)) if run else []
        missing = [name for name in missing if not app.positions.is_inline(name)]
        if missing:
            raise ConfigurationError(
                "on a SQLite read store one process runs every projection (it holds the "
                f"file's lock), so it cannot leave out {', '.join(missing)}; run them all, "
                "or use a PostgreSQL read store, whose projections are leased one by one"
            )
        self.app = app
        self.contend = bool(run)
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with contextlib.suppress(FileNotFoundError):
            self._sock_path.unlink()
        sock.bind(str(self._sock_path))
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_datagram)
        self._spawn(self._follow(), "follow-positions")
        # Appends of this process wake the leader's runners at once (not at their poll).
        self.app.commands.add_middleware(self._note_append)
        self._spawn(self._announce_appends(), "announce-appends")
        if self.contend:
            # The first process to start leads at once, so a single server runs its
            # projections from its first request on.
            if self._try_lock():
                await self._lead()
            else:
                self._spawn(self._wait_for_lock(), "contend-projections")

    async def close(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self._sock_path.unlink()
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only when empty: the last process leaves no litter
        if self._lock_fd is not None:
            # Runners are stopped above, so no commit can follow the release.
            os.close(self._lock_fd)
            self._lock_fd = None
            self.leader = False

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_report)
        self._tasks.append(task)

    def runs(self, projection: str) -> bool:
        return self.leader and projection in self.app.runners

    async def attended(self, projection: str) -> bool:
        return self.leader_alive()

    def leader_alive(self) -> bool:
        """Whether some process holds the projections' lock, so runs them, now."""
        if self.leader:
            return True
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            # A shared lock is refused while the leader holds its exclusive one. Held for
            # an instant: a process contending then just tries again at its next turn.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the shared lock, if taken
        return False

    # -- leading --------------------------------------------------------------------------

    def _try_lock(self) -> bool:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who leads, for people looking
        self._lock_fd = fd
        return True

    async def _wait_for_lock(self) -> None:
        # flock offers no wake-up on release that an event loop can wait for: poll it.
        while not self._try_lock():  # noqa: ASYNC110
            await asyncio.sleep(self.retry_interval)
        log.info("process %d takes over the projections", os.getpid())
        await self._lead()

    async def _lead(self) -> None:
        self.leader = True
        for runner in self.app.runners.values():
            self._spawn(self._supervise(runner), f"run-{runner.name}")
        # Every commit of this process's runners moves a position: wake the others then.
        self._unlisten = self.app.positions.listen(lambda _, __: self._changed.set())
        self._spawn(self._broadcast(), "broadcast-positions")

    async def _supervise(self, runner: ProjectionRunner) -> None:
        """Run one projection; after an unexpected failure (a store error, not a failing
        handler: the projection's own policy covers those), it reports ``retrying`` and
        starts again with backoff. It reloads the checkpoint first: another process may
        have advanced it."""
        await runner.supervise()

    async def _broadcast(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            self._send_all()

    async def _note_append(self, envelope: CommandEnvelope, call_next: Next) -> CommandResult:
        result = await call_next(envelope)
        if result.position and not self.leader:
            self._appended.set()
        return result

    async def _announce_appends(self) -> None:
        while True:
            await self._appended.wait()
            self._appended.clear()
            self._send_all(_APPENDED)

    def _send_all(self, message: bytes = _COMMITTED) -> None:
        sock = self._sock
        if sock is None:
            return
        now = time.monotonic()
        if now - self._peers_at > _PEERS_TTL:
            own = str(self._sock_path)
            self._peers = [str(p) for p in self.run_dir.glob("*.sock") if str(p) != own]
            self._peers_at = now
        for peer in self._peers:
            try:
                sock.sendto(message, peer)
            except BlockingIOError:
                pass  # its queue is full: it has a wake-up pending already
            except (ConnectionRefusedError, FileNotFoundError):
                # Nobody listens there any more: a process that died without cleaning up.
                with contextlib.suppress(OSError):
                    os.unlink(peer)
                self._peers_at = 0.0
            except OSError as error:
                log.debug("cannot wake %s: %s", peer, error)

    # -- following ------------------------------------------------------------------------

    def _on_datagram(self) -> None:
        sock = self._sock
        committed = appended = False
        while sock is not None:
            try:
                message = sock.recv(64)
            except (BlockingIOError, OSError):
                break
            appended |= message == _APPENDED
            committed |= message != _APPENDED
        if appended and self.leader:
            wake = getattr(self.app.event_store, "wake", None)
            if wake is not None:
                wake()  # another process appended: the runners read the log now
        if committed:
            self._wake.set()

    async def _follow(self) -> None:
        positions = self.app.positions
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()
            if self.leader:
                continue  # its own runners advance its tracker as they commit
            try:
                states = await self.app.read_store.states()
            except Exception:
                log.exception("cannot read the projections' checkpoints")
                continue
            for state in states:
                if state.checkpoint < positions.position(state.name):
                    positions.reset(state.name, state.checkpoint)  # reset or rebuilt
                else:
                    positions.advance(state.name, state.checkpoint)


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
