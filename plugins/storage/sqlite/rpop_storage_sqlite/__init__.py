"""The embedded state store: one SQLite file.

WAL mode with ``synchronous = NORMAL``: a commit survives a crash of rpop at
once and a power loss once the WAL is checkpointed.  The delivery journal is
the exception: after its transactions the WAL is fsync'd (in a worker
thread), so a journal entry is on disk before the copy it announces becomes
visible, and a power loss cannot make a message arrive twice either.

Calls are quick local operations, so they run on the event loop's thread;
``busy_timeout`` lets ``rpop apply``, ``rpop poll`` and a running daemon share
the file.  A driver error (a full disk, an I/O error) becomes
:class:`rpopcore.errors.StateFailed` naming the file.

The database, its ``-wal`` and ``-shm`` files and the lease file are
created readable by their owner only (mode 0600).

Leases are byte-range locks (``lockf``) on a file beside the database,
``<path>-leases``, one byte per record id: the kernel releases them the
instant their process dies, so a poll killed with SIGKILL never blocks the
next one.  A process that announces itself as a worker holds the byte at
:data:`WORKER_LOCKS` + its pid, so ``rpop workers`` lists only the living.

Site file::

    [state]
    plugin = "sqlite"
    path = "rpop.sqlite"   # relative to the site file's folder
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import functools
import json
import os
import socket
import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import attrs

from rpopcore.api import (
    REMOVED_MAILBOX_RETENTION,
    ConfigError,
    Directory,
    Key,
    ModuleSettings,
    PendingCopy,
    PlanEntry,
    PollStatus,
    RemoteRecord,
    StateFailed,
    WebSession,
    WorkerInfo,
    settlement,
    directory_from_dict,
    directory_to_dict,
    hookimpl,
    file_path,
    non_empty_string,
    read_table,
    record_from_dict,
    record_to_dict,
    settings_from_dict,
    settings_to_dict,
)

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox TEXT NOT NULL,
    data TEXT NOT NULL,
    owner TEXT,
    -- seconds since the epoch, UNPLANNED (to be worked out) or NULL (disabled)
    planned_for REAL,
    plan_stamp INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_by_mailbox ON records (mailbox);
CREATE INDEX IF NOT EXISTS records_by_owner ON records (owner) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_plan ON records (planned_for) WHERE planned_for IS NOT NULL;
CREATE TABLE IF NOT EXISTS seen_uids (
    mailbox TEXT NOT NULL,
    uid TEXT NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recipients_done (
    mailbox TEXT NOT NULL,
    uid TEXT NOT NULL,
    recipient TEXT NOT NULL,
    PRIMARY KEY (mailbox, uid, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    mailbox TEXT NOT NULL,
    uid TEXT NOT NULL,
    recipient TEXT NOT NULL,
    token TEXT NOT NULL,
    completes INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS removed_mailboxes (
    mailbox TEXT PRIMARY KEY,
    removed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS status (
    record_id INTEGER PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    last_success TEXT,
    last_attempt TEXT,
    error TEXT,
    detail TEXT NOT NULL DEFAULT '',
    retrieved INTEGER NOT NULL DEFAULT 0,
    retrieved_total INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS status_by_error ON status (error) WHERE error IS NOT NULL;
CREATE TABLE IF NOT EXISTS web_passwords (address TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS web_sessions (
    key TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_by_address ON web_sessions (address);
CREATE TABLE IF NOT EXISTS workers (
    pid INTEGER PRIMARY KEY,
    role TEXT NOT NULL,
    processors INTEGER NOT NULL,
    started TEXT NOT NULL
);
"""

#: struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (and padding).
_FLOCK = "hhqqi4x"
#: Where the worker locks start in the lease file (past any record id).
WORKER_LOCKS = 1 << 40

#: Schema 1 kept UIDs per record id and leases in a table; schema 2 keeps
#: them per mailbox identity (computed from each record's data) and leases
#: as locks.  Schema 3 adds the workers table (created by SCHEMA).
MIGRATE_1_TO_2 = """
ALTER TABLE records RENAME TO records_v1;
ALTER TABLE seen_uids RENAME TO seen_uids_v1;
ALTER TABLE recipients_done RENAME TO recipients_done_v1;
ALTER TABLE status RENAME TO status_v1;
DROP TABLE IF EXISTS leases;
"""

#: Schema 3 counts retrieved messages in each status, keeps the web
#: interface's passwords and sessions and lists the live workers (their
#: tables come from SCHEMA).
MIGRATE_2_TO_3 = """
ALTER TABLE status ADD COLUMN retrieved INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN retrieved_total INTEGER NOT NULL DEFAULT 0;
"""

#: Schema 4 keeps each record's owner and planned time in columns of their
#: own, indexed: the web pages read one owner's records and the daemon the
#: due ones without decoding every record (filled by _fill_record_columns).
MIGRATE_3_TO_4 = """
ALTER TABLE records ADD COLUMN owner TEXT;
ALTER TABLE records ADD COLUMN planned_for REAL;
ALTER TABLE records ADD COLUMN plan_stamp INTEGER NOT NULL DEFAULT 0;
"""

#: ``planned_for`` of a record whose due time is to be worked out (sorts
#: before every real time).
UNPLANNED = 0.0


def _failing_as_state_error(method):
    """A driver error in a store call becomes StateFailed naming the file: the
    poll ends with ``state-failed`` and one line, never a traceback."""

    @functools.wraps(method)
    async def call(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StateFailed(f"{self.path}: cannot use the state database: {exc}") from None

    return call


class SqliteStore:
    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._leases: _LeaseLocks | None = None

    async def open(self) -> None:
        try:
            _create_private(self.path)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            with _transaction(db):
                _create_or_upgrade(db, self.path)
                _purge_removed_mailboxes(db, time.time())
            self._leases = _LeaseLocks.open(Path(f"{self.path}-leases"))
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"{self.path}: cannot open the state database ({exc})") from None
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._leases is not None:
            self._leases.close()
            self._leases = None

    # --- configuration ----------------------------------------------------

    def _meta(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _set_meta(self, key: str, value: dict) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    @_failing_as_state_error
    async def load_settings(self) -> ModuleSettings:
        data = self._meta("settings")
        return settings_from_dict(data) if data else ModuleSettings()

    @_failing_as_state_error
    async def load_directory(self) -> Directory:
        data = self._meta("directory")
        return directory_from_dict(data) if data else Directory()

    @_failing_as_state_error
    async def list_records(self, *, ids: Iterable[int] | None = None, owner: str | None = None
                           ) -> list[RemoteRecord]:
        if ids is not None:
            rows = [row for chunk in _chunks(sorted(set(ids))) for row in self._db.execute(
                f"SELECT id, data FROM records WHERE id IN ({','.join('?' * len(chunk))})", chunk)]
            rows.sort()
        elif owner is not None:
            rows = self._db.execute("SELECT id, data FROM records WHERE owner = ? ORDER BY id", (owner,)).fetchall()
        else:
            rows = self._db.execute("SELECT id, data FROM records ORDER BY id").fetchall()
        return [record_from_dict(json.loads(data), rid) for rid, data in rows]

    @_failing_as_state_error
    async def count_records_by_owner(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT owner, count(*) FROM records WHERE owner IS NOT NULL GROUP BY owner"))

    @_failing_as_state_error
    async def get_record(self, record_id: int) -> RemoteRecord | None:
        row = self._db.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
        return record_from_dict(json.loads(row[0]), record_id) if row else None

    @_failing_as_state_error
    async def save_record(self, record: RemoteRecord) -> RemoteRecord:
        with _transaction(self._db):
            saved = self._save_record(record)
            self._note_removed_mailboxes()
            return saved

    def _save_record(self, record: RemoteRecord) -> RemoteRecord:
        data = json.dumps(record_to_dict(record), sort_keys=True)
        owner, planned_for = _record_columns(record)
        if record.id is None:
            cursor = self._db.execute("INSERT INTO records (mailbox, data, owner, planned_for) VALUES (?, ?, ?, ?)",
                                      (record.mailbox, data, owner, planned_for))
            return record_from_dict(json.loads(data), cursor.lastrowid)
        # Saved unchanged (every 'rpop apply' saves every record), it stays planned.
        self._db.execute(
            "UPDATE records SET mailbox = ?, data = ?, owner = ?, "
            "planned_for = CASE WHEN data = ? THEN planned_for ELSE ? END, "
            "plan_stamp = plan_stamp + (data != ?) WHERE id = ?",
            (record.mailbox, data, owner, data, planned_for, data, record.id))
        return record

    def _note_removed_mailboxes(self) -> None:
        """Mailboxes no record uses any more start their retention time; a
        mailbox in use again stops it."""
        self._db.execute("DELETE FROM removed_mailboxes WHERE mailbox IN (SELECT mailbox FROM records)")
        self._db.execute(
            "INSERT OR IGNORE INTO removed_mailboxes "
            "SELECT mailbox, ? FROM (SELECT mailbox FROM seen_uids UNION SELECT mailbox FROM journal "
            "UNION SELECT mailbox FROM recipients_done) WHERE mailbox NOT IN (SELECT mailbox FROM records)",
            (time.time(),),
        )

    @_failing_as_state_error
    async def delete_record(self, record_id: int) -> None:
        with _transaction(self._db):
            self._db.execute("DELETE FROM records WHERE id = ?", (record_id,))
            self._note_removed_mailboxes()

    @_failing_as_state_error
    async def replace_configuration(
        self, settings: ModuleSettings, directory: Directory, records: Sequence[RemoteRecord]
    ) -> list[RemoteRecord]:
        with _transaction(self._db):
            settings_changed = self._meta("settings") != settings_to_dict(settings)
            self._set_meta("settings", settings_to_dict(settings))
            self._set_meta("directory", directory_to_dict(directory))
            existing: dict[str, int] = {}
            for rid, mailbox in self._db.execute("SELECT id, mailbox FROM records ORDER BY id"):
                existing.setdefault(mailbox, rid)
            kept = [self._save_record(attrs.evolve(record, id=existing.pop(record.mailbox, None))) for record in records]
            kept_ids = {record.id for record in kept}
            self._db.executemany(
                "DELETE FROM records WHERE id = ?",
                [(rid,) for (rid,) in self._db.execute("SELECT id FROM records").fetchall() if rid not in kept_ids],
            )
            self._note_removed_mailboxes()
            if settings_changed:  # delays, windows: every due time is to be worked out again
                self._db.execute(f"UPDATE records SET planned_for = {UNPLANNED}, plan_stamp = plan_stamp + 1 "
                                 "WHERE planned_for IS NOT NULL")
        return kept

    @_failing_as_state_error
    async def schema_version(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    # --- retrieval state --------------------------------------------------

    @_failing_as_state_error
    async def mailboxes_with_state(self) -> list[str]:
        return [mailbox for (mailbox,) in self._db.execute(
            "SELECT mailbox FROM seen_uids UNION SELECT mailbox FROM recipients_done "
            "UNION SELECT mailbox FROM journal ORDER BY mailbox")]

    @_failing_as_state_error
    async def seen_uids(self, mailbox: str) -> set[str]:
        return {uid for (uid,) in self._db.execute("SELECT uid FROM seen_uids WHERE mailbox = ?", (mailbox,))}

    @_failing_as_state_error
    async def remember_uids(self, mailbox: str, uids: Iterable[str]) -> None:
        rows = [(mailbox, uid) for uid in uids]
        with _transaction(self._db):
            self._db.executemany("INSERT OR IGNORE INTO seen_uids VALUES (?, ?)", rows)
            self._forget_progress(rows)

    def _forget_progress(self, rows: list[tuple[str, str]]) -> None:
        """Journal entries and per-recipient progress of complete messages."""
        if self._db.execute("SELECT 1 FROM journal LIMIT 1").fetchone():
            self._db.executemany("DELETE FROM journal WHERE mailbox = ? AND uid = ?", rows)
        if self._db.execute("SELECT 1 FROM recipients_done LIMIT 1").fetchone():
            self._db.executemany("DELETE FROM recipients_done WHERE mailbox = ? AND uid = ?", rows)

    @_failing_as_state_error
    async def forget_uids_except(self, mailbox: str, present: Iterable[str]) -> int:
        present = set(present)
        stale = [(mailbox, uid) for uid in await self.seen_uids(mailbox) if uid not in present]
        stale_progress = [
            (mailbox, uid)
            for (uid,) in self._db.execute("SELECT DISTINCT uid FROM recipients_done WHERE mailbox = ?", (mailbox,))
            if uid not in present
        ]
        if stale or stale_progress:
            with _transaction(self._db):
                self._db.executemany("DELETE FROM seen_uids WHERE mailbox = ? AND uid = ?", stale)
                self._db.executemany("DELETE FROM recipients_done WHERE mailbox = ? AND uid = ?", stale_progress)
        return len(stale)

    @_failing_as_state_error
    async def recipient_progress(self, mailbox: str) -> dict[str, set[str]]:
        progress: dict[str, set[str]] = {}
        for uid, recipient in self._db.execute(
            "SELECT uid, recipient FROM recipients_done WHERE mailbox = ?", (mailbox,)
        ):
            progress.setdefault(uid, set()).add(recipient)
        return progress

    @_failing_as_state_error
    async def remember_recipients(self, mailbox: str, uid: str, recipients: Iterable[str]) -> None:
        rows = [(mailbox, uid, recipient) for recipient in recipients]
        with _transaction(self._db):
            self._db.executemany("INSERT OR IGNORE INTO recipients_done VALUES (?, ?, ?)", rows)
            self._db.executemany("DELETE FROM journal WHERE mailbox = ? AND uid = ? AND recipient = ?", rows)

    # --- the delivery journal ---------------------------------------------

    @_failing_as_state_error
    async def journal_copies(self, copies: Sequence[PendingCopy]) -> None:
        with _transaction(self._db):
            self._db.executemany(
                "INSERT OR REPLACE INTO journal VALUES (?, ?, ?, ?, ?)",
                [(c.mailbox, c.uid, c.recipient, c.token, int(c.completes)) for c in copies],
            )
        # The entry must be on disk before the copy it announces becomes
        # visible, even if the power fails between the two.  The commit is
        # in the WAL; fsync the WAL in a worker thread rather than commit
        # with synchronous = FULL, which would block the event loop (and
        # every other poll) for the length of a disk flush.  Pages moved out
        # of the WAL by a checkpoint meanwhile are synced by SQLite itself.
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._sync_wal)
        except OSError as exc:
            raise StateFailed(f"{self.path}-wal: cannot make the state journal durable: {exc.strerror}") from None

    def _sync_wal(self) -> None:
        fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @_failing_as_state_error
    async def pending_copies(self, mailbox: str) -> list[PendingCopy]:
        rows = self._db.execute(
            "SELECT uid, recipient, token, completes FROM journal WHERE mailbox = ? ORDER BY uid, recipient", (mailbox,)
        )
        return [PendingCopy(mailbox, uid, recipient, token, bool(completes)) for uid, recipient, token, completes in rows]

    @_failing_as_state_error
    async def settle_copies(self, visible: Sequence[PendingCopy], abandoned: Sequence[PendingCopy]) -> None:
        complete, partial = settlement(visible, abandoned)
        with _transaction(self._db):
            self._db.executemany("INSERT OR IGNORE INTO seen_uids VALUES (?, ?)", complete)
            self._forget_progress(complete)
            self._db.executemany(
                "INSERT OR IGNORE INTO recipients_done VALUES (?, ?, ?)",
                [(*message, recipient) for message, recipients in partial.items() for recipient in recipients],
            )
            self._db.executemany(
                "DELETE FROM journal WHERE mailbox = ? AND uid = ? AND recipient = ?",
                [(copy.mailbox, copy.uid, copy.recipient) for copy in [*visible, *abandoned]],
            )

    # --- leases -------------------------------------------------------------

    async def acquire_lease(self, record_id: int, holder: str, seconds: int) -> bool:
        return self._leases.acquire(record_id, holder)

    async def release_lease(self, record_id: int, holder: str) -> None:
        if self._leases is not None:
            self._leases.release(record_id, holder)

    @_failing_as_state_error
    async def lease_holders(self) -> dict[int, str]:
        host = socket.gethostname()
        holders = {}
        for (rid,) in self._db.execute("SELECT id FROM records ORDER BY id").fetchall():
            pid = self._leases.holder_pid(rid)
            if pid is not None:
                holders[rid] = f"{host}:{pid}"
        return holders

    # --- workers ------------------------------------------------------------

    @_failing_as_state_error
    async def announce_worker(self, role: str, processors: int) -> None:
        self._leases.hold_worker_lock()
        with _transaction(self._db):
            self._forget_dead_workers()
            self._db.execute("INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?)",
                             (os.getpid(), role, processors, dt.datetime.now(dt.timezone.utc).isoformat()))

    def _forget_dead_workers(self) -> None:
        for (pid,) in self._db.execute("SELECT pid FROM workers").fetchall():
            if self._leases.holder_pid(WORKER_LOCKS + pid) is None:
                self._db.execute("DELETE FROM workers WHERE pid = ?", (pid,))

    @_failing_as_state_error
    async def list_workers(self) -> list[WorkerInfo]:
        host = socket.gethostname()
        polling: dict[int, int] = {}
        for holder in (await self.lease_holders()).values():
            pid = int(holder.rpartition(":")[2])
            polling[pid] = polling.get(pid, 0) + 1
        return [
            WorkerInfo(name=f"{host}:{pid}", host=host, pid=pid, role=role, started=dt.datetime.fromisoformat(started),
                       processors=processors, polling=polling.get(pid, 0))
            for pid, role, processors, started in self._db.execute(
                "SELECT pid, role, processors, started FROM workers ORDER BY started, pid").fetchall()
            if self._leases.holder_pid(WORKER_LOCKS + pid) is not None
        ]

    # --- status -------------------------------------------------------------

    @_failing_as_state_error
    async def save_status(self, status: PollStatus) -> None:
        with _transaction(self._db):
            self._db.execute(
                f"INSERT OR REPLACE INTO status ({_STATUS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (status.record_id, _time(status.last_success), _time(status.last_attempt), status.error,
                 status.detail, status.retrieved, status.retrieved_total),
            )
            self._db.execute(f"UPDATE records SET planned_for = {UNPLANNED}, plan_stamp = plan_stamp + 1 "
                             "WHERE id = ? AND planned_for IS NOT NULL", (status.record_id,))

    @_failing_as_state_error
    async def load_status(self, record_id: int) -> PollStatus | None:
        row = self._db.execute(f"SELECT {_STATUS_COLUMNS} FROM status WHERE record_id = ?", (record_id,)).fetchone()
        return _status(row) if row else None

    @_failing_as_state_error
    async def load_statuses(self, ids: Iterable[int] | None = None) -> dict[int, PollStatus]:
        if ids is None:
            return {row[0]: _status(row) for row in self._db.execute(f"SELECT {_STATUS_COLUMNS} FROM status")}
        return {row[0]: _status(row) for chunk in _chunks(sorted(set(ids))) for row in self._db.execute(
            f"SELECT {_STATUS_COLUMNS} FROM status WHERE record_id IN ({','.join('?' * len(chunk))})", chunk)}

    @_failing_as_state_error
    async def statuses_with_error(self, errors: Iterable[str]) -> dict[int, PollStatus]:
        codes = sorted(set(errors))
        return {row[0]: _status(row) for row in self._db.execute(
            f"SELECT {_STATUS_COLUMNS} FROM status WHERE error IN ({','.join('?' * len(codes))})", codes)}

    # --- planning ---------------------------------------------------------------

    @_failing_as_state_error
    async def records_to_plan(self, by: dt.datetime, limit: int) -> list[PlanEntry]:
        rows = self._db.execute(
            "SELECT id, data, planned_for, plan_stamp FROM records WHERE planned_for <= ? "
            "ORDER BY planned_for LIMIT ?", (by.timestamp(), limit)).fetchall()
        return [PlanEntry(record_from_dict(json.loads(data), rid),
                          None if planned == UNPLANNED else dt.datetime.fromtimestamp(planned, dt.timezone.utc), stamp)
                for rid, data, planned, stamp in rows]

    @_failing_as_state_error
    async def plan_records(self, planned: Mapping[int, tuple[dt.datetime, int]]) -> None:
        with _transaction(self._db):
            self._db.executemany(
                "UPDATE records SET planned_for = ? WHERE id = ? AND plan_stamp = ? AND planned_for IS NOT NULL",
                [(max(when.timestamp(), UNPLANNED + 1), rid, stamp) for rid, (when, stamp) in planned.items()])

    # --- the web interface ----------------------------------------------------

    @_failing_as_state_error
    async def load_web_password(self, address: str) -> str | None:
        row = self._db.execute("SELECT hash FROM web_passwords WHERE address = ?", (address,)).fetchone()
        return row[0] if row else None

    @_failing_as_state_error
    async def save_web_password(self, address: str, password_hash: str | None) -> None:
        with _transaction(self._db):
            if password_hash is None:
                self._db.execute("DELETE FROM web_passwords WHERE address = ?", (address,))
            else:
                self._db.execute("INSERT OR REPLACE INTO web_passwords VALUES (?, ?)", (address, password_hash))
            self._db.execute("DELETE FROM web_sessions WHERE address = ?", (address,))

    @_failing_as_state_error
    async def save_web_session(self, session: WebSession) -> None:
        with _transaction(self._db):
            self._db.execute("DELETE FROM web_sessions WHERE expires < ?", (time.time(),))
            self._db.execute(
                "INSERT INTO web_sessions VALUES (?, ?, ?, ?)",
                (session.key, session.address, session.csrf, session.expires.timestamp()),
            )

    @_failing_as_state_error
    async def load_web_session(self, key: str) -> WebSession | None:
        row = self._db.execute(
            "SELECT address, csrf, expires FROM web_sessions WHERE key = ? AND expires >= ?", (key, time.time())
        ).fetchone()
        if row is None:
            return None
        address, csrf, expires = row
        return WebSession(key, address, csrf, dt.datetime.fromtimestamp(expires, dt.timezone.utc))

    @_failing_as_state_error
    async def delete_web_session(self, key: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE key = ?", (key,))


def _create_or_upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, inside the caller's
    transaction; a database written by a newer rpop is refused."""
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if has_meta else None
    version = int(row[0]) if row else SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: the state database has schema version {version}, written by a newer rpop "
            f"(this one knows up to {SCHEMA_VERSION}); upgrade rpop"
        )
    if row is not None and version == SCHEMA_VERSION:
        return  # nothing to write: a full disk must not stop a store from opening
    if version == 1:
        _run_script(db, MIGRATE_1_TO_2 + SCHEMA)
        _copy_schema_1(db)
    if version == 2:
        _run_script(db, MIGRATE_2_TO_3)
    if version in (2, 3):
        _run_script(db, MIGRATE_3_TO_4)
    _run_script(db, SCHEMA)
    if row is not None:
        _fill_record_columns(db)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _fill_record_columns(db: sqlite3.Connection) -> None:
    """Owner and planned time of records written by an older schema."""
    db.executemany("UPDATE records SET owner = ?, planned_for = ? WHERE id = ?", [
        (*_record_columns(record_from_dict(json.loads(data), rid)), rid)
        for rid, data in db.execute("SELECT id, data FROM records").fetchall()])


def _record_columns(record: RemoteRecord) -> tuple[str | None, float | None]:
    """The owner and the planned time a new or changed record starts with."""
    return record.owner, (UNPLANNED if record.poll_every is not None else None)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement: ``executescript`` would commit the caller's
    transaction first, and an upgrade must be all or nothing."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _copy_schema_1(db: sqlite3.Connection) -> None:
    mailbox_of = {}
    for rid, data in db.execute("SELECT id, data FROM records_v1 ORDER BY id").fetchall():
        mailbox_of[rid] = record_from_dict(json.loads(data), rid).mailbox
        db.execute("INSERT INTO records (id, mailbox, data) VALUES (?, ?, ?)", (rid, mailbox_of[rid], data))
    db.executemany(
        "INSERT OR IGNORE INTO seen_uids VALUES (?, ?)",
        [(mailbox_of[rid], uid) for rid, uid in db.execute("SELECT record_id, uid FROM seen_uids_v1").fetchall()],
    )
    db.executemany(
        "INSERT OR IGNORE INTO recipients_done VALUES (?, ?, ?)",
        [
            (mailbox_of[rid], uid, recipient)
            for rid, uid, recipient in db.execute("SELECT record_id, uid, recipient FROM recipients_done_v1").fetchall()
        ],
    )
    db.execute(
        "INSERT INTO status (record_id, last_success, last_attempt, error, detail) "
        "SELECT record_id, last_success, last_attempt, error, detail FROM status_v1"
    )
    for table in ("status_v1", "recipients_done_v1", "seen_uids_v1", "records_v1"):
        db.execute(f"DROP TABLE {table}")


def _purge_removed_mailboxes(db: sqlite3.Connection, now: float) -> None:
    """UIDs of mailboxes removed longer ago than the retention time go."""
    expired = [
        (mailbox,)
        for (mailbox,) in db.execute(
            "SELECT mailbox FROM removed_mailboxes WHERE removed_at < ?", (now - REMOVED_MAILBOX_RETENTION,)
        ).fetchall()
    ]
    if not expired:
        return
    for table in ("seen_uids", "recipients_done", "journal", "removed_mailboxes"):
        db.executemany(f"DELETE FROM {table} WHERE mailbox = ?", expired)


class _LeaseLocks:
    """Leases as ``lockf`` byte-range locks, one byte per record id.

    POSIX locks belong to a process, and closing any descriptor of the file
    drops all of that process's locks on it, so one open file per lease file
    serves every store of a process, and the holders within the process are
    told apart here.
    """

    _open: dict[str, "_LeaseLocks"] = {}
    _guard = threading.Lock()

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd
        self.users = 0
        self.holders: dict[int, str] = {}
        self.worker_locked = False

    @classmethod
    def open(cls, path: Path) -> "_LeaseLocks":
        key = os.path.realpath(path)
        with cls._guard:
            locks = cls._open.get(key)
            if locks is None:
                fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                locks = cls._open[key] = cls(key, fd)
            locks.users += 1
            return locks

    def close(self) -> None:
        with self._guard:
            self.users -= 1
            if self.users == 0:
                del self._open[self.path]
                os.close(self.fd)  # releases every lock this process held on it

    def acquire(self, record_id: int, holder: str) -> bool:
        with self._guard:
            if record_id in self.holders:
                return self.holders[record_id] == holder
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, record_id)
            except (BlockingIOError, PermissionError):
                return False  # another process holds it
            self.holders[record_id] = holder
            return True

    def release(self, record_id: int, holder: str) -> None:
        with self._guard:
            if self.holders.get(record_id) != holder:
                return
            del self.holders[record_id]
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, record_id)

    def hold_worker_lock(self) -> None:
        """This process's worker lock (see :data:`WORKER_LOCKS`)."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, WORKER_LOCKS + os.getpid())
        self.worker_locked = True

    def holder_pid(self, offset: int) -> int | None:
        """The pid of the process holding the lock at ``offset``, or None."""
        with self._guard:
            # F_GETLK reports other processes' locks only; this one's are known here.
            if offset in self.holders or (offset == WORKER_LOCKS + os.getpid() and self.worker_locked):
                return os.getpid()
            query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
            l_type, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(self.fd, fcntl.F_GETLK, query))
            return None if l_type == fcntl.F_UNLCK else pid



class _transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")


def _chunks(values: list, size: int = 500) -> Iterable[list]:
    """``values`` in pieces small enough for one statement's parameters."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _time(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


_STATUS_COLUMNS = "record_id, last_success, last_attempt, error, detail, retrieved, retrieved_total"


def _status(row) -> PollStatus:
    rid, success, attempt, error, detail, retrieved, retrieved_total = row
    return PollStatus(
        record_id=rid,
        last_success=dt.datetime.fromisoformat(success) if success else None,
        last_attempt=dt.datetime.fromisoformat(attempt) if attempt else None,
        error=error,
        detail=detail or "",
        retrieved=retrieved,
        retrieved_total=retrieved_total,
    )


def _create_private(path: Path) -> None:
    """The database file and its folder, made if missing; the file readable
    by its owner only, rather than 0644 as SQLite makes it: it holds sealed
    passwords and every account's name.  SQLite gives ``-wal`` and ``-shm``
    the mode of the database file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _database_path(value) -> str:
    """``[state] path``: a file name, not empty, without NUL."""
    return file_path(non_empty_string(value))


def make_store(options, base_dir: Path) -> SqliteStore:
    values = read_table(dict(options), {"path": Key(_database_path, "rpop.sqlite")}, "[state]")
    path = base_dir / values["path"]
    # A path that cannot hold the database is the site file's mistake: said
    # now, naming the key, rather than as a database error when it opens.
    try:
        _create_private(path)
    except OSError as exc:
        # mkdir says "File exists" of a file where a folder should be.
        reason = f"{exc.filename} is not a folder" if isinstance(exc, FileExistsError) else exc.strerror
        raise ConfigError(
            f"[state] key 'path': cannot create or write {path} ({reason}); "
            "give a path in a folder rpop can create and write"
        ) from None
    return SqliteStore(path)


@hookimpl
def rpop_state_stores():
    return {"sqlite": make_store}
