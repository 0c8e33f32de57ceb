"""The state store on PostgreSQL: the same tables and meaning as the SQLite
store, through a pool of async connections.

Every method is one short transaction on a pooled connection; leases live
on a connection of their own (:mod:`.leases`).  A driver error becomes
:class:`rpopcore.errors.StateFailed` naming the database (never its
password).  To add a method: write it here with ``@_failing_as_state_error``
and, if it needs a table or column, append a migration in :mod:`.schema`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Iterable, Mapping, Sequence

import attrs
import psycopg
from psycopg_pool import AsyncConnectionPool

from rpopcore.api import (
    REMOVED_MAILBOX_RETENTION,
    ConfigError,
    Directory,
    ModuleSettings,
    PendingCopy,
    PlanEntry,
    PollStatus,
    RemoteRecord,
    StateFailed,
    WebSession,
    WorkerInfo,
    directory_from_dict,
    directory_to_dict,
    record_from_dict,
    record_to_dict,
    settings_from_dict,
    settings_to_dict,
    settlement,
)

from . import schema
from .leases import LIVE_WORKER, RECORD_LEASE, LeaseSession, _as_oid, _reason

#: The rows of pg_locks that are this database's advisory locks in a namespace.
_LOCKS_HERE = ("SELECT l.objid, l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = %s "
               "AND l.objsubid = 2 AND l.granted "
               "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def _failing_as_state_error(method):
    """A driver error becomes StateFailed naming the database: the poll ends
    with ``state-failed`` and one line, never a traceback."""

    @functools.wraps(method)
    async def call(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except (psycopg.Error, OSError) as exc:
            raise StateFailed(f"{self.where}: cannot use the state database: {_reason(exc)}") from None

    return call


class PostgresStore:
    def __init__(self, dsn: str, where: str, lease_timeout: int = 30, pool_size: int = 10):
        self.dsn = dsn
        #: How errors name the database: host, port and name, never the password.
        self.where = where
        self.lease_timeout = lease_timeout
        self.pool_size = pool_size
        self._pool: AsyncConnectionPool | None = None
        self._leases: LeaseSession | None = None

    async def open(self) -> None:
        pool = AsyncConnectionPool(self.dsn, min_size=1, max_size=self.pool_size, open=False,
                                   kwargs={"autocommit": True, "options": "-c timezone=UTC"}, timeout=30)
        try:
            await pool.open(wait=True, timeout=max(5, self.lease_timeout))
        except Exception as exc:  # the pool says PoolTimeout; the reason is in its log
            await pool.close()
            raise ConfigError(
                f"{self.where}: cannot connect to the state database ({_reason(exc)}); "
                "check [state] dsn in the site file and that PostgreSQL is running"
            ) from None
        try:
            async with pool.connection() as conn:
                await schema.create_or_upgrade(conn, self.where)
                await self._purge_removed_mailboxes(conn)
        except psycopg.Error as exc:
            await pool.close()
            raise ConfigError(f"{self.where}: cannot open the state database ({_reason(exc)})") from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._leases = LeaseSession(self.dsn, self.where, self.lease_timeout)
        await self._leases.start()

    async def close(self) -> None:
        if self._leases is not None:
            await self._leases.close()
            self._leases = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @_failing_as_state_error
    async def schema_version(self) -> int:
        async with self._pool.connection() as conn:
            return await schema.version(conn)

    async def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    # --- configuration ----------------------------------------------------

    async def _meta(self, key: str) -> dict | None:
        rows = await self._rows("SELECT value FROM meta WHERE key = %s", (key,))
        return json.loads(rows[0][0]) if rows else None

    @staticmethod
    async def _set_meta(conn, key: str, value: dict) -> None:
        await conn.execute(
            "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    @_failing_as_state_error
    async def load_settings(self) -> ModuleSettings:
        data = await self._meta("settings")
        return settings_from_dict(data) if data else ModuleSettings()

    @_failing_as_state_error
    async def load_directory(self) -> Directory:
        data = await self._meta("directory")
        return directory_from_dict(data) if data else Directory()

    @_failing_as_state_error
    async def list_records(self, *, ids: Iterable[int] | None = None, owner: str | None = None
                           ) -> list[RemoteRecord]:
        if ids is not None:
            rows = await self._rows("SELECT id, data FROM records WHERE id = ANY(%s) ORDER BY id", (list(ids),))
        elif owner is not None:
            rows = await self._rows("SELECT id, data FROM records WHERE owner = %s ORDER BY id", (owner,))
        else:
            rows = await self._rows("SELECT id, data FROM records ORDER BY id")
        return [record_from_dict(json.loads(data), rid) for rid, data in rows]

    @_failing_as_state_error
    async def count_records_by_owner(self) -> dict[str, int]:
        return dict(await self._rows("SELECT owner, count(*) FROM records WHERE owner IS NOT NULL GROUP BY owner"))

    @_failing_as_state_error
    async def get_record(self, record_id: int) -> RemoteRecord | None:
        rows = await self._rows("SELECT data FROM records WHERE id = %s", (record_id,))
        return record_from_dict(json.loads(rows[0][0]), record_id) if rows else None

    @_failing_as_state_error
    async def save_record(self, record: RemoteRecord) -> RemoteRecord:
        async with self._pool.connection() as conn, conn.transaction():
            saved = await self._save_record(conn, record)
            await self._note_removed_mailboxes(conn)
            return saved

    @staticmethod
    async def _save_record(conn, record: RemoteRecord) -> RemoteRecord:
        data = json.dumps(record_to_dict(record), sort_keys=True)
        planned_for = UNPLANNED if record.poll_every is not None else None
        if record.id is None:
            cursor = await conn.execute(
                "INSERT INTO records (mailbox, data, owner, planned_for) VALUES (%s, %s, %s, %s) RETURNING id",
                (record.mailbox, data, record.owner, planned_for))
            (rid,) = await cursor.fetchone()
            return record_from_dict(json.loads(data), rid)
        # Saved unchanged (every 'rpop apply' saves every record), it stays planned.
        await conn.execute(
            "UPDATE records SET mailbox = %(mailbox)s, data = %(data)s, owner = %(owner)s, "
            "planned_for = CASE WHEN data = %(data)s THEN planned_for ELSE %(planned_for)s::timestamptz END, "
            "plan_stamp = plan_stamp + CASE WHEN data = %(data)s THEN 0 ELSE 1 END WHERE id = %(id)s",
            {"mailbox": record.mailbox, "data": data, "owner": record.owner, "planned_for": planned_for,
             "id": record.id})
        return record

    @staticmethod
    async def _note_removed_mailboxes(conn) -> None:
        """Mailboxes no record uses any more start their retention time; a
        mailbox in use again stops it."""
        await conn.execute("DELETE FROM removed_mailboxes WHERE mailbox IN (SELECT mailbox FROM records)")
        await conn.execute(
            "INSERT INTO removed_mailboxes "
            "SELECT mailbox, now() FROM (SELECT mailbox FROM seen_uids UNION SELECT mailbox FROM journal "
            "UNION SELECT mailbox FROM recipients_done) used WHERE mailbox NOT IN (SELECT mailbox FROM records) "
            "ON CONFLICT (mailbox) DO NOTHING"
        )

    @staticmethod
    async def _purge_removed_mailboxes(conn) -> None:
        """UIDs of mailboxes removed longer ago than the retention time go."""
        async with conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM removed_mailboxes WHERE removed_at < now() - make_interval(secs => %s) "
                "RETURNING mailbox", (REMOVED_MAILBOX_RETENTION,))
            expired = [mailbox for (mailbox,) in await cursor.fetchall()]
            for table in ("seen_uids", "recipients_done", "journal"):
                if expired:
                    await conn.execute(f"DELETE FROM {table} WHERE mailbox = ANY(%s)", (expired,))

    @_failing_as_state_error
    async def delete_record(self, record_id: int) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM records WHERE id = %s", (record_id,))
            await self._note_removed_mailboxes(conn)

    @_failing_as_state_error
    async def replace_configuration(
        self, settings: ModuleSettings, directory: Directory, records: Sequence[RemoteRecord]
    ) -> list[RemoteRecord]:
        async with self._pool.connection() as conn, conn.transaction():
            # One writer of the configuration at a time: two 'rpop apply' at
            # once must not interleave their keep-or-remove decisions.
            await conn.execute("LOCK TABLE records IN SHARE ROW EXCLUSIVE MODE")
            cursor = await conn.execute("SELECT value FROM meta WHERE key = 'settings'")
            row = await cursor.fetchone()
            settings_changed = (json.loads(row[0]) if row else None) != settings_to_dict(settings)
            await self._set_meta(conn, "settings", settings_to_dict(settings))
            await self._set_meta(conn, "directory", directory_to_dict(directory))
            existing: dict[str, int] = {}
            cursor = await conn.execute("SELECT id, mailbox FROM records ORDER BY id")
            for rid, mailbox in await cursor.fetchall():
                existing.setdefault(mailbox, rid)
            kept = [await self._save_record(conn, attrs.evolve(record, id=existing.pop(record.mailbox, None)))
                    for record in records]
            await conn.execute("DELETE FROM records WHERE NOT (id = ANY(%s))", ([record.id for record in kept],))
            await self._note_removed_mailboxes(conn)
            if settings_changed:  # delays, windows: every due time is to be worked out again
                await conn.execute("UPDATE records SET planned_for = %s, plan_stamp = plan_stamp + 1 "
                                   "WHERE planned_for IS NOT NULL", (UNPLANNED,))
        return kept

    # --- retrieval state --------------------------------------------------

    @_failing_as_state_error
    async def mailboxes_with_state(self) -> list[str]:
        return [mailbox for (mailbox,) in await self._rows(
            "SELECT mailbox FROM seen_uids UNION SELECT mailbox FROM recipients_done "
            "UNION SELECT mailbox FROM journal ORDER BY mailbox")]

    @_failing_as_state_error
    async def seen_uids(self, mailbox: str) -> set[str]:
        return {uid for (uid,) in await self._rows("SELECT uid FROM seen_uids WHERE mailbox = %s", (mailbox,))}

    @_failing_as_state_error
    async def remember_uids(self, mailbox: str, uids: Iterable[str]) -> None:
        uids = list(uids)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO seen_uids SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING", (mailbox, uids))
            await self._forget_progress(conn, mailbox, uids)

    @staticmethod
    async def _forget_progress(conn, mailbox: str, uids: list[str]) -> None:
        """Journal entries and per-recipient progress of complete messages."""
        for table in ("journal", "recipients_done"):
            await conn.execute(f"DELETE FROM {table} WHERE mailbox = %s AND uid = ANY(%s)", (mailbox, uids))

    @_failing_as_state_error
    async def forget_uids_except(self, mailbox: str, present: Iterable[str]) -> int:
        present = list(set(present))
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM seen_uids WHERE mailbox = %s AND NOT (uid = ANY(%s))", (mailbox, present))
            forgotten = cursor.rowcount
            await conn.execute(
                "DELETE FROM recipients_done WHERE mailbox = %s AND NOT (uid = ANY(%s))", (mailbox, present))
        return forgotten

    @_failing_as_state_error
    async def recipient_progress(self, mailbox: str) -> dict[str, set[str]]:
        progress: dict[str, set[str]] = {}
        for uid, recipient in await self._rows(
            "SELECT uid, recipient FROM recipients_done WHERE mailbox = %s", (mailbox,)
        ):
            progress.setdefault(uid, set()).add(recipient)
        return progress

    @_failing_as_state_error
    async def remember_recipients(self, mailbox: str, uid: str, recipients: Iterable[str]) -> None:
        recipients = list(recipients)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO recipients_done SELECT %s, %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                (mailbox, uid, recipients),
            )
            await conn.execute(
                "DELETE FROM journal WHERE mailbox = %s AND uid = %s AND recipient = ANY(%s)",
                (mailbox, uid, recipients),
            )

    # --- the delivery journal ---------------------------------------------

    @_failing_as_state_error
    async def journal_copies(self, copies: Sequence[PendingCopy]) -> None:
        # A commit returns once PostgreSQL has flushed it (synchronous_commit
        # on, its default): the entry is durable before the copy it
        # announces becomes visible.
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO journal VALUES (%s, %s, %s, %s, %s) ON CONFLICT (mailbox, uid, recipient) "
                    "DO UPDATE SET token = excluded.token, completes = excluded.completes",
                    [(c.mailbox, c.uid, c.recipient, c.token, c.completes) for c in copies],
                )

    @_failing_as_state_error
    async def pending_copies(self, mailbox: str) -> list[PendingCopy]:
        rows = await self._rows(
            "SELECT uid, recipient, token, completes FROM journal WHERE mailbox = %s ORDER BY uid, recipient",
            (mailbox,),
        )
        return [PendingCopy(mailbox, uid, recipient, token, completes) for uid, recipient, token, completes in rows]

    @_failing_as_state_error
    async def settle_copies(self, visible: Sequence[PendingCopy], abandoned: Sequence[PendingCopy]) -> None:
        complete, partial = settlement(visible, abandoned)
        async with self._pool.connection() as conn, conn.transaction():
            for mailbox, uid in complete:
                await conn.execute("INSERT INTO seen_uids VALUES (%s, %s) ON CONFLICT DO NOTHING", (mailbox, uid))
                await self._forget_progress(conn, mailbox, [uid])
            for (mailbox, uid), recipients in partial.items():
                await conn.execute(
                    "INSERT INTO recipients_done SELECT %s, %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (mailbox, uid, recipients),
                )
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "DELETE FROM journal WHERE mailbox = %s AND uid = %s AND recipient = %s",
                    [(copy.mailbox, copy.uid, copy.recipient) for copy in [*visible, *abandoned]],
                )

    # --- leases and workers -------------------------------------------------

    async def acquire_lease(self, record_id: int, holder: str, seconds: int) -> bool:
        # ``seconds`` bounds a lease whose holder stops renewing; here the
        # lease ends with its holder's connection, within lease_timeout.
        return await self._leases.acquire(record_id, holder)

    async def release_lease(self, record_id: int, holder: str) -> None:
        if self._leases is not None:
            await self._leases.release(record_id, holder)

    @_failing_as_state_error
    async def lease_holders(self) -> dict[int, str]:
        rows = await self._rows(
            f"SELECT leases.objid, a.application_name, leases.pid FROM ({_LOCKS_HERE}) leases "
            "LEFT JOIN pg_stat_activity a ON a.pid = leases.pid",
            (_as_oid(RECORD_LEASE),),
        )
        return {int(rid): name or f"database session {backend}" for rid, name, backend in rows}

    async def announce_worker(self, role: str, processors: int) -> None:
        await self._leases.announce(role, processors)

    @_failing_as_state_error
    async def list_workers(self) -> list[WorkerInfo]:
        rows = await self._rows(
            f"SELECT w.id, w.host, w.pid, w.role, w.started, w.processors, "
            f"(SELECT count(*) FROM ({_LOCKS_HERE}) leases WHERE leases.pid = w.backend_pid) "
            f"FROM workers w JOIN ({_LOCKS_HERE}) alive ON alive.objid = w.id ORDER BY w.started, w.id",
            (_as_oid(RECORD_LEASE), _as_oid(LIVE_WORKER)),
        )
        return [WorkerInfo(name=f"{host}:{pid}"[-63:], host=host, pid=pid, role=role, started=started,
                           processors=processors, polling=polling)
                for _, host, pid, role, started, processors, polling in rows]

    # --- status -------------------------------------------------------------

    @_failing_as_state_error
    async def save_status(self, status: PollStatus) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO status (record_id, last_success, last_attempt, error, detail, retrieved, retrieved_total) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (record_id) DO UPDATE SET "
                "last_success = excluded.last_success, last_attempt = excluded.last_attempt, "
                "error = excluded.error, detail = excluded.detail, retrieved = excluded.retrieved, "
                "retrieved_total = excluded.retrieved_total",
                (status.record_id, status.last_success, status.last_attempt, status.error, status.detail,
                 status.retrieved, status.retrieved_total),
            )
            await conn.execute("UPDATE records SET planned_for = %s, plan_stamp = plan_stamp + 1 "
                               "WHERE id = %s AND planned_for IS NOT NULL", (UNPLANNED, status.record_id))

    @_failing_as_state_error
    async def load_status(self, record_id: int) -> PollStatus | None:
        rows = await self._rows(f"SELECT {_STATUS_COLUMNS} FROM status WHERE record_id = %s", (record_id,))
        return _status(rows[0]) if rows else None

    @_failing_as_state_error
    async def load_statuses(self, ids: Iterable[int] | None = None) -> dict[int, PollStatus]:
        if ids is None:
            rows = await self._rows(f"SELECT {_STATUS_COLUMNS} FROM status")
        else:
            rows = await self._rows(f"SELECT {_STATUS_COLUMNS} FROM status WHERE record_id = ANY(%s)", (list(ids),))
        return {row[0]: _status(row) for row in rows}

    @_failing_as_state_error
    async def statuses_with_error(self, errors: Iterable[str]) -> dict[int, PollStatus]:
        rows = await self._rows(f"SELECT {_STATUS_COLUMNS} FROM status WHERE error = ANY(%s)", (list(errors),))
        return {row[0]: _status(row) for row in rows}

    # --- planning ---------------------------------------------------------------

    @_failing_as_state_error
    async def records_to_plan(self, by: dt.datetime, limit: int) -> list[PlanEntry]:
        rows = await self._rows(
            "SELECT id, data, planned_for, plan_stamp FROM records WHERE planned_for <= %s "
            "ORDER BY planned_for LIMIT %s", (by, limit))
        return [PlanEntry(record_from_dict(json.loads(data), rid), None if planned == UNPLANNED else _utc(planned),
                          stamp) for rid, data, planned, stamp in rows]

    @_failing_as_state_error
    async def plan_records(self, planned: Mapping[int, tuple[dt.datetime, int]]) -> None:
        if not planned:
            return
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE records SET planned_for = p.at FROM unnest(%s::int[], %s::timestamptz[], %s::int[]) "
                "AS p(id, at, stamp) WHERE records.id = p.id AND records.plan_stamp = p.stamp "
                "AND records.planned_for IS NOT NULL",
                ([rid for rid in planned], [at for at, _ in planned.values()],
                 [stamp for _, stamp in planned.values()]))

    # --- the web interface's passwords and sessions ----------------------------

    @_failing_as_state_error
    async def load_web_password(self, address: str) -> str | None:
        rows = await self._rows("SELECT hash FROM web_passwords WHERE address = %s", (address,))
        return rows[0][0] if rows else None

    @_failing_as_state_error
    async def save_web_password(self, address: str, password_hash: str | None) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            if password_hash is None:
                await conn.execute("DELETE FROM web_passwords WHERE address = %s", (address,))
            else:
                await conn.execute(
                    "INSERT INTO web_passwords VALUES (%s, %s) ON CONFLICT (address) DO UPDATE SET hash = excluded.hash",
                    (address, password_hash),
                )
            await conn.execute("DELETE FROM web_sessions WHERE address = %s", (address,))

    @_failing_as_state_error
    async def save_web_session(self, session: WebSession) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM web_sessions WHERE expires < now()")
            await conn.execute("INSERT INTO web_sessions VALUES (%s, %s, %s, %s)",
                               (session.key, session.address, session.csrf, session.expires))

    @_failing_as_state_error
    async def load_web_session(self, key: str) -> WebSession | None:
        rows = await self._rows(
            "SELECT address, csrf, expires FROM web_sessions WHERE key = %s AND expires >= now()", (key,))
        if not rows:
            return None
        address, csrf, expires = rows[0]
        return WebSession(key, address, csrf, _utc(expires))

    @_failing_as_state_error
    async def delete_web_session(self, key: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM web_sessions WHERE key = %s", (key,))


_STATUS_COLUMNS = "record_id, last_success, last_attempt, error, detail, retrieved, retrieved_total"

#: ``planned_for`` of a record whose due time is to be worked out: the
#: epoch, before every time a plan gives (as in the SQLite store).
UNPLANNED = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.astimezone(dt.timezone.utc) if moment else None


def _status(row) -> PollStatus:
    rid, success, attempt, error, detail, retrieved, retrieved_total = row
    return PollStatus(record_id=rid, last_success=_utc(success), last_attempt=_utc(attempt), error=error,
                      detail=detail or "", retrieved=retrieved, retrieved_total=retrieved_total)
