"""The embedded state store: one SQLite file.

WAL mode with ``synchronous = NORMAL``: a commit survives a crash of rpop at
once and a power loss once the WAL is checkpointed.  The worst a power loss
can do is forget that a message was delivered, which makes it arrive twice,
never be lost (deliveries themselves are fsync'd).

Calls are quick local operations, so they run on the event loop's thread;
``busy_timeout`` lets ``rpop apply`` and a running daemon share the file.

Site file::

    [state]
    plugin = "sqlite"
    path = "rpop.sqlite"   # relative to the site file's folder
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

import attrs

from rpopcore import codec, errors
from rpopcore.config.schema import Key, non_empty_string, read_table
from rpopcore.hookspecs import hookimpl
from rpopcore.model import Directory, ModuleSettings, PollStatus, RemoteRecord

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    natural_key TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_uids (
    record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    PRIMARY KEY (record_id, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recipients_done (
    record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    recipient TEXT NOT NULL,
    PRIMARY KEY (record_id, uid, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    record_id INTEGER PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS status (
    record_id INTEGER PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    last_success TEXT,
    last_attempt TEXT,
    error TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
"""


class SqliteStore:
    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise errors.ConfigError(f"{self.path}: cannot open the state database ({exc})") from None
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- configuration ----------------------------------------------------

    def _meta(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _set_meta(self, key: str, value: dict) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    async def load_settings(self) -> ModuleSettings:
        data = self._meta("settings")
        return codec.settings_from_dict(data) if data else ModuleSettings()

    async def load_directory(self) -> Directory:
        data = self._meta("directory")
        return codec.directory_from_dict(data) if data else Directory()

    async def list_records(self) -> list[RemoteRecord]:
        rows = self._db.execute("SELECT id, data FROM records ORDER BY id").fetchall()
        return [codec.record_from_dict(json.loads(data), rid) for rid, data in rows]

    async def get_record(self, record_id: int) -> RemoteRecord | None:
        row = self._db.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
        return codec.record_from_dict(json.loads(row[0]), record_id) if row else None

    async def save_record(self, record: RemoteRecord) -> RemoteRecord:
        with _transaction(self._db):
            return self._save_record(record)

    def _save_record(self, record: RemoteRecord) -> RemoteRecord:
        key = json.dumps(record.mailbox)
        data = json.dumps(codec.record_to_dict(record), sort_keys=True)
        if record.id is None:
            cursor = self._db.execute("INSERT INTO records (natural_key, data) VALUES (?, ?)", (key, data))
            return codec.record_from_dict(json.loads(data), cursor.lastrowid)
        self._db.execute("UPDATE records SET natural_key = ?, data = ? WHERE id = ?", (key, data, record.id))
        return record

    async def delete_record(self, record_id: int) -> None:
        with _transaction(self._db):
            self._db.execute("DELETE FROM records WHERE id = ?", (record_id,))

    async def replace_configuration(
        self, settings: ModuleSettings, directory: Directory, records: Sequence[RemoteRecord]
    ) -> list[RemoteRecord]:
        with _transaction(self._db):
            self._set_meta("settings", codec.settings_to_dict(settings))
            self._set_meta("directory", codec.directory_to_dict(directory))
            existing = {
                json.loads(key): rid for rid, key in self._db.execute("SELECT id, natural_key FROM records")
            }
            kept = []
            for record in records:
                rid = existing.pop(record.mailbox, None)
                kept.append(self._save_record(_with_id(record, rid)))
            for rid in existing.values():
                self._db.execute("DELETE FROM records WHERE id = ?", (rid,))
        return kept

    # --- retrieval state --------------------------------------------------

    async def seen_uids(self, record_id: int) -> set[str]:
        return {uid for (uid,) in self._db.execute("SELECT uid FROM seen_uids WHERE record_id = ?", (record_id,))}

    async def remember_uids(self, record_id: int, uids: Iterable[str]) -> None:
        with _transaction(self._db):
            self._db.executemany("INSERT OR IGNORE INTO seen_uids VALUES (?, ?)", [(record_id, uid) for uid in uids])

    async def forget_uids_except(self, record_id: int, present: Iterable[str]) -> int:
        present = set(present)
        stale = [uid for uid in await self.seen_uids(record_id) if uid not in present]
        if stale:
            with _transaction(self._db):
                self._db.executemany(
                    "DELETE FROM seen_uids WHERE record_id = ? AND uid = ?", [(record_id, uid) for uid in stale]
                )
                self._db.executemany(
                    "DELETE FROM recipients_done WHERE record_id = ? AND uid = ?", [(record_id, uid) for uid in stale]
                )
        return len(stale)

    async def delivered_recipients(self, record_id: int, uid: str) -> set[str]:
        rows = self._db.execute(
            "SELECT recipient FROM recipients_done WHERE record_id = ? AND uid = ?", (record_id, uid)
        )
        return {recipient for (recipient,) in rows}

    async def remember_recipient(self, record_id: int, uid: str, recipient: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO recipients_done VALUES (?, ?, ?)", (record_id, uid, recipient))

    async def forget_recipients(self, record_id: int, uid: str) -> None:
        self._db.execute("DELETE FROM recipients_done WHERE record_id = ? AND uid = ?", (record_id, uid))

    async def acquire_lease(self, record_id: int, holder: str, seconds: int) -> bool:
        now = time.time()
        with _transaction(self._db):
            row = self._db.execute("SELECT holder, until FROM leases WHERE record_id = ?", (record_id,)).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            self._db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (record_id, holder, now + seconds))
        return True

    async def release_lease(self, record_id: int, holder: str) -> None:
        self._db.execute("DELETE FROM leases WHERE record_id = ? AND holder = ?", (record_id, holder))

    async def save_status(self, status: PollStatus) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO status VALUES (?, ?, ?, ?, ?)",
            (status.record_id, _time(status.last_success), _time(status.last_attempt), status.error, status.detail),
        )

    async def load_status(self, record_id: int) -> PollStatus | None:
        row = self._db.execute("SELECT * FROM status WHERE record_id = ?", (record_id,)).fetchone()
        return _status(row) if row else None

    async def load_statuses(self) -> dict[int, PollStatus]:
        return {row[0]: _status(row) for row in self._db.execute("SELECT * FROM status")}


class _transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb):
        self.db.execute("ROLLBACK" if kind else "COMMIT")


def _with_id(record: RemoteRecord, record_id: int | None) -> RemoteRecord:
    return attrs.evolve(record, id=record_id)


def _time(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _status(row) -> PollStatus:
    rid, success, attempt, error, detail = row
    return PollStatus(
        record_id=rid,
        last_success=dt.datetime.fromisoformat(success) if success else None,
        last_attempt=dt.datetime.fromisoformat(attempt) if attempt else None,
        error=error,
        detail=detail or "",
    )


def make_store(options, base_dir: Path) -> SqliteStore:
    values = read_table(dict(options), {"path": Key(non_empty_string, "rpop.sqlite")}, "[state]")
    return SqliteStore(base_dir / values["path"])


@hookimpl
def rpop_state_stores():
    return {"sqlite": make_store}
