"""Leases as session-level advisory locks on one connection per process.

PostgreSQL releases a session's advisory locks the moment the session ends:
when the worker's process dies (SIGKILL included, the kernel closes its
socket and the server sees it at once), or, when a whole machine vanishes,
once the server's TCP keepalives and ``tcp_user_timeout`` give up on the
connection -- within ``lease_timeout`` seconds.

The worker side watches the same connection: a ping every third of
``lease_timeout``; when one fails or takes too long, every lease of the
process counts as lost at once (a renewal answers False, and the poll stops
before its next message) and a new connection is made for the next leases.
So a live worker cut off from the database stops polling no later than the
server lets another worker start.

Advisory locks are re-entrant within a session, so the holders within this
process (several polls, ``poll now`` beside the daemon) are told apart here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import psycopg

from rpopcore.api import ConfigError, StateFailed

log = logging.getLogger("rpop.state.postgresql")

#: Advisory-lock namespaces (first key): a record's lease, a live worker.
RECORD_LEASE = 0x72706F01
LIVE_WORKER = 0x72706F02


def keepalive_options(lease_timeout: int) -> dict[str, object]:
    """Connection parameters that make both ends give up on a silent peer
    within ``lease_timeout`` seconds."""
    idle = max(1, lease_timeout // 3)
    interval = max(1, lease_timeout // 6)
    server = (f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
              f"-c tcp_keepalives_count=2 -c tcp_user_timeout={lease_timeout * 1000}")
    return {"keepalives": 1, "keepalives_idle": idle, "keepalives_interval": interval,
            "keepalives_count": 2, "tcp_user_timeout": lease_timeout * 1000, "options": server,
            "connect_timeout": max(2, lease_timeout // 2)}


class LeaseSession:
    """The connection holding this process's leases (and its worker
    announcement)."""

    def __init__(self, dsn: str, where: str, lease_timeout: int):
        self.dsn = dsn
        self.where = where
        self.lease_timeout = lease_timeout
        self.holders: dict[int, str] = {}
        #: Holders whose lease went with a lost connection: their renewal is
        #: refused, never turned into a new lease (another worker may have
        #: polled the record in between).
        self.lost: set[str] = set()
        self._conn: psycopg.AsyncConnection | None = None
        self._turn = asyncio.Lock()
        self._watch: asyncio.Task | None = None
        self._worker: tuple[str, int] | None = None  # announced (role, processors)
        self._worker_id: int | None = None  # its row, while this connection holds its lock

    async def start(self) -> None:
        self._watch = asyncio.create_task(self._watchdog(), name="rpop-lease-watchdog")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            try:
                await self._watch
            except asyncio.CancelledError:
                pass
        async with self._turn:
            self.holders.clear()  # given back: closing ends the session and its locks
            await self._drop()

    async def _connection(self) -> psycopg.AsyncConnection:
        """The lease connection, made (and the worker announced again) when
        there is none."""
        if self._conn is None:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, application_name=process_name(),
                    **keepalive_options(self.lease_timeout))
            except psycopg.Error as exc:
                raise StateFailed(f"{self.where}: cannot reach the state database: {_reason(exc)}") from None
            if self._worker is not None:
                await self._register(*self._worker)
        return self._conn

    async def _drop(self) -> None:
        """Forget the connection and with it every lease."""
        if self.holders:
            log.warning("[state] the connection holding %d leases was lost; their polls stop", len(self.holders))
        self.lost.update(self.holders.values())
        self.holders.clear()
        conn, self._conn = self._conn, None
        self._worker_id = None  # its lock went with the connection
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                pass

    async def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = await self._connection()
        try:
            cursor = await asyncio.wait_for(conn.execute(sql, params), self.lease_timeout / 3)
            return await cursor.fetchall() if cursor.description else []
        except (psycopg.Error, asyncio.TimeoutError, OSError) as exc:
            await self._drop()
            raise StateFailed(f"{self.where}: the state database connection was lost: {_reason(exc)}") from None

    async def acquire(self, record_id: int, holder: str) -> bool:
        async with self._turn:
            if holder in self.lost:
                return False
            if record_id in self.holders:
                # A renewal: the lock lives as long as the connection, which
                # the watchdog checks; no round trip.
                return self.holders[record_id] == holder and self._conn is not None
            ((taken,),) = await self._query("SELECT pg_try_advisory_lock(%s, %s)", (RECORD_LEASE, record_id))
            if taken:
                self.holders[record_id] = holder
            return taken

    async def release(self, record_id: int, holder: str) -> None:
        async with self._turn:
            self.lost.discard(holder)
            if self.holders.get(record_id) != holder:
                return
            del self.holders[record_id]
            if self._conn is not None:
                try:
                    await self._query("SELECT pg_advisory_unlock(%s, %s)", (RECORD_LEASE, record_id))
                except StateFailed:
                    pass  # the connection went, and the lock with it

    async def announce(self, role: str, processors: int) -> None:
        async with self._turn:
            self._worker = (role, processors)
            if self._conn is None:
                await self._connection()  # registers
            elif self._worker_id is not None:
                await self._query("UPDATE workers SET role = %s, processors = %s WHERE id = %s",
                                  (role, processors, self._worker_id))
            else:
                await self._register(role, processors)

    async def _register(self, role: str, processors: int) -> None:
        """A row naming this process, and a lock on it that says it lives."""
        conn = self._conn
        try:
            await conn.execute(
                "DELETE FROM workers w WHERE NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' "
                "AND l.classid = %s AND l.objid = w.id AND l.objsubid = 2 AND l.granted "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                (_as_oid(LIVE_WORKER),),
            )
            cursor = await conn.execute(
                "INSERT INTO workers (host, pid, role, processors, started, backend_pid) "
                "VALUES (%s, %s, %s, %s, now(), pg_backend_pid()) RETURNING id",
                (socket.gethostname(), os.getpid(), role, processors),
            )
            (worker_id,) = await cursor.fetchone()
            await conn.execute("SELECT pg_advisory_lock(%s, %s)", (LIVE_WORKER, worker_id))
            self._worker_id = worker_id
        except psycopg.Error as exc:
            await self._drop()
            raise StateFailed(f"{self.where}: cannot announce this worker: {_reason(exc)}") from None

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self.lease_timeout / 3)
            async with self._turn:
                if self._conn is None:
                    continue
                try:
                    await self._query("SELECT 1")
                except StateFailed as exc:
                    log.warning("[state] %s", exc)


def process_name() -> str:
    """``host:pid``: how other workers name this process (the lease
    connection's ``application_name``)."""
    return f"{socket.gethostname()}:{os.getpid()}"[-63:]


def _as_oid(key: int) -> int:
    """pg_locks shows an advisory key as an unsigned oid."""
    return key & 0xFFFFFFFF


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
