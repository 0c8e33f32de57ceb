"""What the PostgreSQL store adds to the contract (tests/contract): its
schema versions, its site-file keys, and leases that end with a worker's
connection and are seen by every worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time

import attrs
import psycopg
import pytest
import rpop_storage_postgresql as pg_store
from rpop_storage_postgresql import schema

from rpopcore.api import ConfigError, StateFailed
from rpopcore.api import Directory, ModuleSettings, RecordKind, RemoteRecord, SecretRef, record_to_dict


def record(account: str = "a") -> RemoteRecord:
    return RemoteRecord(kind=RecordKind.REMOTE, owner="alice@example.test", account=account,
                        host="pop.isp.test", secret=SecretRef("stored", "token"))


async def opened(dsn: str, **options):
    store = pg_store.make_store({"dsn": dsn, **options}, None)
    await store.open()
    return store


async def test_an_empty_database_gets_the_whole_schema_and_opening_again_changes_nothing(postgresql_dsn):
    store = await opened(postgresql_dsn)
    try:
        assert await store.schema_version() == schema.SCHEMA_VERSION
        (saved,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
        await store.remember_uids(saved.mailbox, ["u1"])
    finally:
        await store.close()
    again = await opened(postgresql_dsn)
    try:
        assert await again.list_records() == [saved]
        assert await again.seen_uids(saved.mailbox) == {"u1"}
    finally:
        await again.close()


async def test_every_earlier_version_is_brought_forward(postgresql_server):
    enabled, disabled = record("on"), attrs.evolve(record("off"), poll_every=None)
    for start in range(0, schema.SCHEMA_VERSION):
        dsn = postgresql_server.create_database()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for migration in schema.MIGRATIONS[:start]:
                conn.execute(migration)
            if start:
                conn.execute("INSERT INTO meta VALUES ('schema_version', %s)", (str(start),))
                for each in (enabled, disabled):  # as that version wrote them
                    conn.execute("INSERT INTO records (mailbox, data) VALUES (%s, %s)",
                                 (each.mailbox, json.dumps(record_to_dict(each), sort_keys=True)))
        store = await opened(dsn)
        try:
            assert await store.schema_version() == schema.SCHEMA_VERSION
            kept = await store.list_records()
            assert [attrs.evolve(r, id=None) for r in kept] == ([enabled, disabled] if start else [])
            # Their owner and whether they are planned are read from what they hold.
            assert len(await store.list_records(owner="alice@example.test")) == len(kept)
            due = await store.records_to_plan(dt.datetime.now(dt.timezone.utc), 10)
            assert [e.record.account for e in due] == (["on"] if start else [])
        finally:
            await store.close()


async def test_a_database_of_a_newer_rpop_is_refused_naming_it(postgresql_dsn):
    await (await opened(postgresql_dsn)).close()
    with psycopg.connect(postgresql_dsn, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema version 99, written by a newer rpop"):
        await opened(postgresql_dsn)


async def test_an_unreachable_database_is_one_line_without_the_password():
    store = pg_store.make_store({"dsn": "postgresql://rpop:s3cret-pw@127.0.0.1:1/rpop", "lease_timeout": "5s"}, None)
    with pytest.raises(ConfigError) as caught:
        await store.open()
    assert "postgresql://127.0.0.1:1/rpop: cannot connect" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("options, complaint", [
    ({}, "exactly one of 'dsn'"),
    ({"dsn": "postgresql://x@h/d", "dsn_env": "RPOP_DSN"}, "exactly one of 'dsn'"),
    ({"dsn_env": "RPOP_TEST_UNSET_DSN"}, "RPOP_TEST_UNSET_DSN is not set"),
    ({"dsn": "postgresql://x@h/d", "lease_timeout": "1s"}, "'lease_timeout': expected from 5s"),
    ({"dsn": "postgresql://x@h/d", "lease": "30s"}, "unknown key 'lease'"),
])
def test_site_file_mistakes_name_the_key(options, complaint, monkeypatch):
    monkeypatch.delenv("RPOP_TEST_UNSET_DSN", raising=False)
    with pytest.raises(ConfigError, match=complaint):
        pg_store.make_store(options, None)


def test_the_dsn_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RPOP_DSN", "postgresql://rpop@db.example.test:6432/mail")
    store = pg_store.make_store({"dsn_env": "RPOP_DSN"}, None)
    assert store.where == "postgresql://db.example.test:6432/mail"


async def test_a_lost_connection_loses_the_leases_and_the_renewal_says_so(postgresql_dsn):
    store = await opened(postgresql_dsn)
    other = await opened(postgresql_dsn)
    try:
        (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
        assert await store.acquire_lease(r.id, "w:1", 60)
        with psycopg.connect(postgresql_dsn, autocommit=True) as admin:
            # What a network cut does to the worker's session, seen from the server.
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                          "AND objid = %s AND pid <> pg_backend_pid()", (r.id,))
        deadline = time.monotonic() + 2
        while not await other.acquire_lease(r.id, "x:1", 60):
            assert time.monotonic() < deadline, "the server lets the lease go with the session"
            await asyncio.sleep(0.02)
        with pytest.raises(StateFailed):
            await store._leases._query("SELECT 1")  # the watchdog's ping, without waiting for it
        assert not await store.acquire_lease(r.id, "w:1", 60), "the holder learns that its lease is gone"
    finally:
        await store.close()
        await other.close()


async def test_a_poll_whose_lease_connection_drops_stops_and_the_next_poll_finishes_exactly_once(
    pop3_server, postgresql_dsn, tmp_path
):
    from rpopcore.testing import Faults, Message, Site, delivered, make_site, remote

    # Given a PostgreSQL site and a mailbox of 60 messages served slowly
    # (the poll takes longer than a third of lease_timeout, the watchdog's period),
    mail = [Message(f"u{n}", f"Subject: {n}\r\n\r\nmessage-{n:02d}\r\n".encode()) for n in range(60)]
    server = await pop3_server(mail, faults=Faults(response_delay=0.1))
    site_file = make_site(tmp_path, remote(server.host, server.port, leave=False))
    site_file.write_text(site_file.read_text().replace(
        '[state]\nplugin = "sqlite"\n', f'[state]\nplugin = "postgresql"\ndsn = "{postgresql_dsn}"\nlease_timeout = "6s"\n'))
    site = await Site.open(site_file)
    try:
        await site.apply(tmp_path / "decl.toml")
        polling = asyncio.create_task(site.poll_once())
        while len(delivered(tmp_path)) < 3:
            await asyncio.sleep(0.02)
        # when the connection holding its lease is cut (as a network cut would, seen from the server),
        with psycopg.connect(postgresql_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                          "AND objid = 1 AND pid <> pg_backend_pid()")
        (cut,) = await polling
        # then the poll stops early and says why,
        assert cut.error == "state-failed" and "lease on this record was lost" in cut.detail
        assert 3 <= cut.delivered < 60
        # and the next poll delivers the rest: every message exactly once, none left on the server.
        (rest,) = await site.poll_once()
        assert rest.error is None
    finally:
        await site.close()
    bodies = sorted(re.search(rb"message-\d\d", body)[0] for body in delivered(tmp_path))
    assert bodies == [f"message-{n:02d}".encode() for n in range(60)]
    assert server.mailbox == []
