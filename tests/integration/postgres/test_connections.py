"""Every connection of a process comes from one helper, and its stores share one pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout

from twofold.adapters.postgres import PostgresEventStore, PostgresReadStore
from twofold.adapters.postgres._pool import ConnectionPool, application_name, connect, connect_sync

pytestmark = pytest.mark.postgres


async def test_every_connection_sets_keepalives_and_names_its_process(postgres_url: str) -> None:
    conn = await connect(postgres_url, role="writer")
    sync = connect_sync(postgres_url, role="views-admin")
    try:
        for dsn, role in ((conn.info.dsn, "writer"), (sync.info.dsn, "views-admin")):
            options = conninfo_to_dict(dsn)
            assert options["keepalives"] == "1"
            assert options["keepalives_idle"] == "5"
            assert options["connect_timeout"] == "5"
            assert options["application_name"] == f"twofold {role} pid {os.getpid()}"
    finally:
        await conn.close()
        sync.close()


async def test_a_name_set_in_the_url_is_kept(postgres_url: str) -> None:
    conn = await connect(f"{postgres_url}?application_name=mine", role="writer")
    try:
        cur = await conn.execute("SHOW application_name")
        assert await cur.fetchone() == ("mine",)
    finally:
        await conn.close()


async def test_a_connect_timeout_set_in_the_url_is_kept(postgres_url: str) -> None:
    conn = await connect(f"{postgres_url}?connect_timeout=17", role="writer")
    try:
        options = conninfo_to_dict(conn.info.dsn)
        assert options["connect_timeout"] == "17"
        assert options["keepalives"] == "1"  # the other defaults still apply
    finally:
        await conn.close()


async def test_the_stores_of_a_process_share_one_pool(postgres_url: str, pg_schema: str) -> None:
    events = await PostgresEventStore.open(postgres_url, schema=pg_schema, pool_size=4)
    views = await PostgresReadStore.open(postgres_url, schema=pg_schema, pool_size=4)
    try:
        # Eight concurrent reads, four through each store: the pool has room for four.
        reads = [events.head_position() for _ in range(4)] + [views.states() for _ in range(4)]
        await asyncio.gather(*reads)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            (pooled,) = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (f"twofold pool pid {os.getpid()}",),
            ).fetchone() or (0,)
        assert 1 <= pooled <= 4
    finally:
        await views.close()
        await events.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _through(postgres_url: str, port: int) -> str:
    """The same database, reached on 127.0.0.1:``port`` instead."""
    parts = urlsplit(postgres_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


class Cable:
    """A TCP cable from a local port to the PostgreSQL server, that the test can pull out
    (every connection through it drops, and the port refuses new ones) and plug in again."""

    def __init__(self, postgres_url: str) -> None:
        target = urlsplit(postgres_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 5432)
        self.port = _free_port()
        self.url = _through(postgres_url, self.port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def plug(self) -> None:
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", self.port)

    async def pull(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_a_pool_whose_server_is_down_fails_at_once_not_after_its_timeout() -> None:
    # Nothing listens on the port. The pool would wait an hour for a connection; the
    # first statement gets the connection's own error instead, with no wait.
    pool = ConnectionPool(
        f"postgresql://postgres@127.0.0.1:{_free_port()}/test", size=2, timeout=3600
    )
    try:
        for _ in range(2):
            with pytest.raises(psycopg.OperationalError) as caught:
                async with pool.connection() as conn:
                    await conn.execute("SELECT 1")
            assert not isinstance(caught.value, PoolTimeout)
            assert "refused" in str(caught.value).lower()
    finally:
        await pool.close()


async def test_a_pool_fails_at_once_while_its_server_is_away_and_recovers_after(
    postgres_url: str,
) -> None:
    cable = Cable(postgres_url)
    await cable.plug()
    pool = ConnectionPool(cable.url, size=2, timeout=3600)
    try:
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        await cable.pull()
        # The pooled connection broke: that statement fails, and the next one finds the
        # server away at once instead of waiting for the pool to reconnect.
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError) as caught:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        assert not isinstance(caught.value, PoolTimeout)
        await cable.plug()
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT 2")).fetchone() == (2,)
    finally:
        await pool.close()
        if cable._server is not None:
            await cable.pull()


def test_a_pool_of_no_connections_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="pool_size must be 1 or more, not 0"):
        ConnectionPool("postgresql://postgres@127.0.0.1/test", size=0)


def test_a_long_role_is_cut_in_the_name_but_the_process_is_kept() -> None:
    name = application_name("lease-relay:nats://a-rather-long-host-name.example:4222/TWOFOLD")
    assert len(name.encode()) <= 63
    assert name.startswith("twofold lease-relay:nats://")
    assert name.endswith(f" pid {os.getpid()}")
