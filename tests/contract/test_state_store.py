"""The contract every state store passes.  Each store plugin is listed in
STORES and gets every test: SQLite in a temporary folder, PostgreSQL in a
new database on the real server the tests start."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
import time

import attrs
import pytest

from rpopcore.model import (
    Directory,
    Domain,
    ModuleSettings,
    PendingCopy,
    PollStatus,
    RecordKind,
    RemoteRecord,
    SecretRef,
)
from rpopcore.plugins import plugin_manager


def _store_factories():
    merged = {}
    for contributed in plugin_manager().hook.rpop_state_stores():
        merged.update(contributed)
    return merged


STORES = ["sqlite", "postgresql"]


@pytest.fixture(params=STORES)
def store_name(request) -> str:
    return request.param


@pytest.fixture
def store_options(store_name, request) -> dict:
    """The ``[state]`` table (less ``plugin``) of a new, empty store."""
    if store_name == "postgresql":
        return {"dsn": request.getfixturevalue("postgresql_dsn"), "lease_timeout": "6s"}
    return {}


@pytest.fixture
async def store(store_name, store_options, tmp_path):
    factory = _store_factories()[store_name]
    store = factory(store_options, tmp_path)
    await store.open()
    yield store
    await store.close()


def record(account="a", owner="alice@example.test", **kw) -> RemoteRecord:
    return RemoteRecord(kind=RecordKind.REMOTE, owner=owner, account=account, host="pop.isp.test:1110",
                        secret=SecretRef("stored", "token"), **kw)


async def test_a_new_store_has_defaults_and_nothing_else(store):
    assert await store.load_settings() == ModuleSettings()
    assert await store.load_directory() == Directory()
    assert await store.list_records() == []
    assert await store.load_statuses() == {}


async def test_records_round_trip_exactly(store):
    saved = await store.save_record(record(leave=False, apop=True, poll_every=None, options={"x": 1}))
    assert saved.id is not None
    assert await store.get_record(saved.id) == saved
    assert await store.list_records() == [saved]
    await store.delete_record(saved.id)
    assert await store.get_record(saved.id) is None


MAILBOX = "a@pop.isp.test"


async def test_replace_configuration_keeps_ids_of_the_same_mailbox_whatever_else_changes(store):
    settings = ModuleSettings(processors=3, activity_schedule=("Mon-Fri 08:00-18:00",))
    directory = Directory((Domain("example.test", main=True, accounts=["alice"], aliases={"al": "alice"}),))
    (first,) = await store.replace_configuration(settings, directory, [record()])
    assert first.mailbox == MAILBOX
    await store.remember_uids(first.mailbox, ["u1"])
    await store.save_status(PollStatus(first.id, error="timeout", detail="slow"))
    # The same mailbox over pop3s on another port, with another owner: the same record.
    moved = attrs.evolve(record(leave=False, owner="bob@example.test"), host="POP.isp.test:995", tls=True)
    (again, other) = await store.replace_configuration(settings, directory, [moved, record("b")])
    assert again.id == first.id and again.leave is False and again.tls and other.id != first.id
    assert await store.seen_uids(MAILBOX) == {"u1"}
    assert (await store.load_status(first.id)).error == "timeout"
    assert await store.load_settings() == settings
    assert await store.load_directory() == directory


async def test_a_removed_mailbox_keeps_its_uids_so_adding_it_back_retrieves_nothing_twice(store):
    (first,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
    await store.remember_uids(first.mailbox, ["u1", "u2"])
    (only_b,) = await store.replace_configuration(ModuleSettings(), Directory(), [record("b")])
    assert first.id not in await store.load_statuses()
    assert [r.mailbox for r in await store.list_records()] == [only_b.mailbox]
    assert await store.seen_uids(MAILBOX) == {"u1", "u2"}
    await store.delete_record(only_b.id)
    (back,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
    assert await store.seen_uids(back.mailbox) == {"u1", "u2"}


async def test_uids_are_remembered_and_forgotten_when_gone_from_the_server(store):
    await store.remember_uids(MAILBOX, ["a", "b"])
    await store.remember_uids(MAILBOX, ["c", "a"])  # remembering twice is harmless
    await store.remember_recipients(MAILBOX, "d", ["alice@example.test"])
    assert await store.forget_uids_except(MAILBOX, {"b", "z"}) == 2
    assert await store.seen_uids(MAILBOX) == {"b"}
    assert await store.recipient_progress(MAILBOX) == {}
    assert await store.seen_uids("other@pop.isp.test") == set()


async def test_every_mailbox_with_state_is_listed_whether_or_not_a_record_uses_it(store):
    await store.remember_uids("b@pop.isp.test", ["u1"])
    await store.remember_recipients("c@pop.isp.test", "u2", ["alice@example.test"])
    await store.journal_copies([PendingCopy("a@pop.isp.test", "u3", "alice@example.test", "t1")])
    assert await store.mailboxes_with_state() == ["a@pop.isp.test", "b@pop.isp.test", "c@pop.isp.test"]
    assert await store.schema_version() >= 1


async def test_per_recipient_progress_goes_once_the_message_is_complete(store):
    await store.remember_recipients(MAILBOX, "u", ["alice@example.test"])
    await store.remember_recipients(MAILBOX, "u", ["bob@example.test", "alice@example.test"])
    assert await store.recipient_progress(MAILBOX) == {"u": {"alice@example.test", "bob@example.test"}}
    await store.remember_uids(MAILBOX, ["u"])
    assert await store.recipient_progress(MAILBOX) == {}
    assert await store.seen_uids(MAILBOX) == {"u"}


async def test_the_journal_settles_visible_copies_into_uids_or_progress_and_drops_the_rest(store):
    whole = [PendingCopy(MAILBOX, "u1", "alice@example.test", "t1")]
    partial = [PendingCopy(MAILBOX, "u2", "alice@example.test", "t2", completes=False)]
    split = [PendingCopy(MAILBOX, "u3", "alice@example.test", "t3"), PendingCopy(MAILBOX, "u3", "bob@example.test", "t4")]
    lost = [PendingCopy(MAILBOX, "u4", "alice@example.test", "t5")]
    await store.journal_copies(whole + partial)
    elsewhere = PendingCopy("other@pop.isp.test", "u1", "alice@example.test", "t6")
    await store.journal_copies(split + lost + [elsewhere])  # one transaction for several mailboxes' polls
    assert set(await store.pending_copies(MAILBOX)) == {*whole, *partial, *split, *lost}
    assert await store.pending_copies("other@pop.isp.test") == [elsewhere]
    await store.settle_copies(visible=whole + partial + split[:1], abandoned=split[1:] + lost)
    assert await store.pending_copies(MAILBOX) == []
    assert await store.seen_uids(MAILBOX) == {"u1"}
    assert await store.recipient_progress(MAILBOX) == {"u2": {"alice@example.test"}, "u3": {"alice@example.test"}}


async def test_remembering_a_uid_or_its_recipients_clears_their_journal_entries(store):
    await store.journal_copies([PendingCopy(MAILBOX, "u1", "a@x", "t1"), PendingCopy(MAILBOX, "u2", "a@x", "t2"),
                                         PendingCopy(MAILBOX, "u2", "b@x", "t3")])
    await store.remember_uids(MAILBOX, ["u1"])
    await store.remember_recipients(MAILBOX, "u2", ["a@x"])
    assert await store.pending_copies(MAILBOX) == [PendingCopy(MAILBOX, "u2", "b@x", "t3")]


async def test_statuses(store):
    (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    status = PollStatus(r.id, last_success=moment, last_attempt=moment, error=None)
    await store.save_status(status)
    assert await store.load_status(r.id) == status
    assert await store.load_statuses() == {r.id: status}


async def test_leases_let_one_holder_poll_a_record_at_a_time(store):
    (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
    assert await store.acquire_lease(r.id, "worker-a", 60)
    assert not await store.acquire_lease(r.id, "worker-b", 60)
    assert await store.acquire_lease(r.id, "worker-a", 60), "the holder renews its own lease"
    await store.release_lease(r.id, "worker-b")  # not the holder: no effect
    assert not await store.acquire_lease(r.id, "worker-b", 60)
    await store.release_lease(r.id, "worker-a")
    assert await store.acquire_lease(r.id, "worker-b", 60)


LEASE_HOLDER = """
import asyncio, sys
from pathlib import Path
from rpopcore.plugins import plugin_manager

async def hold():
    factories = {{}}
    for contributed in plugin_manager().hook.rpop_state_stores():
        factories.update(contributed)
    store = factories[{name!r}]({options!r}, Path({folder!r}))
    await store.open()
    await store.announce_worker("run", 3)
    assert await store.acquire_lease({record_id}, "killed-worker", 600)
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(hold())
"""


async def test_a_lease_whose_holder_was_killed_is_free_at_once(store, store_name, store_options, tmp_path):
    (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
    holder = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER.format(name=store_name, options=store_options, folder=str(tmp_path),
                                                   record_id=r.id)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not await store.acquire_lease(r.id, "this-worker", 600), "another process holds it"
        (worker,) = await store.list_workers()
        assert (worker.pid, worker.role, worker.processors, worker.polling) == (holder.pid, "run", 3, 1)
        assert await store.lease_holders() == {r.id: worker.name}
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops a lock at once; PostgreSQL ends a session as soon as
    # its backend reads the end of the killed process's connection.
    freed_within = {"sqlite": 0.0, "postgresql": 2.0}[store_name]
    deadline = time.monotonic() + freed_within
    while not await store.acquire_lease(r.id, "this-worker", 600):
        assert time.monotonic() < deadline, "the killed process's lease ended with it"
        await asyncio.sleep(0.02)
    assert await store.list_workers() == [], "a dead worker is not listed"
    assert await store.lease_holders() == {r.id: f"{socket.gethostname()}:{os.getpid()}"}
