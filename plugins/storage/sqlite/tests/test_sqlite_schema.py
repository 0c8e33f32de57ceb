"""The SQLite store's schema versions: a database written by an earlier rpop
is upgraded on open, keeping every record, status and remembered UID; one
written by a newer rpop is refused."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3

import pytest
import rpop_storage_sqlite as sqlite_store

from rpopcore.api import (
    ConfigError,
    Directory,
    ModuleSettings,
    RecordKind,
    RemoteRecord,
    SecretRef,
    StateFailed,
    record_to_dict,
)
from rpopcore.testing.contract import StateStoreContract

# The schema rpop wrote before UIDs belonged to mailboxes.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, natural_key TEXT NOT NULL UNIQUE, data TEXT NOT NULL);
CREATE TABLE seen_uids (record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE, uid TEXT NOT NULL,
    PRIMARY KEY (record_id, uid)) WITHOUT ROWID;
CREATE TABLE recipients_done (record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    uid TEXT NOT NULL, recipient TEXT NOT NULL, PRIMARY KEY (record_id, uid, recipient)) WITHOUT ROWID;
CREATE TABLE leases (record_id INTEGER PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    holder TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE status (record_id INTEGER PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    last_success TEXT, last_attempt TEXT, error TEXT, detail TEXT NOT NULL DEFAULT '');
INSERT INTO meta VALUES ('schema_version', '1');
"""


def record(account: str, host: str) -> RemoteRecord:
    return RemoteRecord(kind=RecordKind.REMOTE, owner="alice@example.test", account=account, host=host,
                        secret=SecretRef("stored", "token"))


async def test_a_schema_1_database_is_upgraded_keeping_records_statuses_and_uids(tmp_path):
    path = tmp_path / "rpop.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    for rid, rec in ((1, record("a", "pop.isp.test:1110")), (7, record("b", "POP.other.test"))):
        db.execute("INSERT INTO records VALUES (?, ?, ?)",
                   (rid, json.dumps(["remote", "alice@example.test", rec.account]), json.dumps(record_to_dict(rec))))
    db.executemany("INSERT INTO seen_uids VALUES (?, ?)", [(1, "u1"), (1, "u2"), (7, "v1")])
    db.execute("INSERT INTO recipients_done VALUES (7, 'v2', 'bob@example.test')")
    db.execute("INSERT INTO leases VALUES (1, 'a-dead-process', 9e99)")
    db.execute("INSERT INTO status VALUES (7, NULL, '2026-01-01T00:00:00+00:00', 'timeout', 'slow')")
    db.commit()
    db.close()

    store = sqlite_store.SqliteStore(path)
    await store.open()
    assert [(r.id, r.mailbox) for r in await store.list_records()] == [(1, "a@pop.isp.test"), (7, "b@pop.other.test")]
    assert await store.seen_uids("a@pop.isp.test") == {"u1", "u2"}
    assert await store.seen_uids("b@pop.other.test") == {"v1"}
    assert await store.recipient_progress("b@pop.other.test") == {"v2": {"bob@example.test"}}
    assert (await store.load_status(7)).error == "timeout"
    assert await store.acquire_lease(1, "me", 60), "schema 1's leases table is gone with its stale rows"
    await store.close()
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(sqlite_store.SCHEMA_VERSION),)


async def test_a_database_from_a_newer_rpop_is_refused_with_one_line(tmp_path):
    path = tmp_path / "rpop.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('schema_version', '99');")
    db.close()
    with pytest.raises(ConfigError, match=r"rpop.sqlite: .*schema version 99.*upgrade rpop"):
        await sqlite_store.SqliteStore(path).open()


async def test_a_full_disk_is_a_state_failure_naming_the_file(tmp_path):
    store = sqlite_store.SqliteStore(tmp_path / "rpop.sqlite")
    await store.open()
    store._db.execute("PRAGMA max_page_count = 1")  # as good as a full disk for SQLite: SQLITE_FULL
    with pytest.raises(StateFailed, match=r"rpop.sqlite: cannot use the state database: database or disk is full"):
        await store.remember_uids("a@pop.isp.test", [f"u{i}" for i in range(1000)])
    await store.close()


async def test_a_schema_2_database_gains_counts_web_tables_and_workers_keeping_everything(tmp_path):
    path = tmp_path / "rpop.sqlite"
    store = sqlite_store.SqliteStore(path)
    await store.open()
    (saved,) = await store.replace_configuration(ModuleSettings(), Directory(), [record("a", "pop.isp.test")])
    await store.remember_uids(saved.mailbox, ["u1"])
    await store.close()
    # Take the database back to schema 2: no counts, no web tables, no workers,
    # no owner or planned time of its own.
    db = sqlite3.connect(path)
    db.execute("INSERT INTO status (record_id, error, detail) VALUES (?, 'timeout', 'slow')", (saved.id,))
    db.executescript(
        "DROP TABLE web_passwords; DROP TABLE web_sessions; DROP TABLE workers;"
        "ALTER TABLE status DROP COLUMN retrieved; ALTER TABLE status DROP COLUMN retrieved_total;"
        "DROP INDEX records_by_owner; DROP INDEX records_by_plan; DROP INDEX status_by_error;"
        "ALTER TABLE records DROP COLUMN owner; ALTER TABLE records DROP COLUMN planned_for;"
        "ALTER TABLE records DROP COLUMN plan_stamp;"
        "UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
    db.close()

    store = sqlite_store.SqliteStore(path)
    await store.open()
    assert await store.schema_version() == sqlite_store.SCHEMA_VERSION == 4
    assert await store.list_records() == [saved] and await store.seen_uids(saved.mailbox) == {"u1"}
    assert await store.list_records(owner=saved.owner) == [saved]
    assert [e.record for e in await store.records_to_plan(dt.datetime.now(dt.timezone.utc), 10)] == [saved]
    status = await store.load_status(saved.id)
    assert (status.error, status.retrieved, status.retrieved_total) == ("timeout", 0, 0)
    await store.save_web_password("alice@example.test", "$argon2id$x")
    assert await store.load_web_password("alice@example.test") == "$argon2id$x"
    await store.announce_worker("run", 2)
    assert [(w.pid, w.role) for w in await store.list_workers()] == [(os.getpid(), "run")]
    await store.close()


class TestSqliteContract(StateStoreContract):
    """The contract every state store passes."""

    @pytest.fixture
    def store_name(self):
        return "sqlite"
