"""The contract every state store passes.  Each store plugin is listed in
STORES; a new store (PostgreSQL) adds itself there and gets every test."""

from __future__ import annotations

import datetime as dt

import pytest

from rpopcore.model import (
    Directory,
    Domain,
    ModuleSettings,
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


STORES = ["sqlite"]


@pytest.fixture(params=STORES)
async def store(request, tmp_path):
    factory = _store_factories()[request.param]
    store = factory({}, tmp_path)
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


async def test_replace_configuration_keeps_ids_and_uids_of_the_same_mailbox(store):
    settings = ModuleSettings(processors=3, activity_schedule=("Mon-Fri 08:00-18:00",))
    directory = Directory((Domain("example.test", main=True, accounts=["alice"], aliases={"al": "alice"}),))
    (first,) = await store.replace_configuration(settings, directory, [record()])
    await store.remember_uids(first.id, ["u1"])
    await store.save_status(PollStatus(first.id, error="timeout", detail="slow"))
    (again, other) = await store.replace_configuration(settings, directory, [record(leave=False), record("b")])
    assert again.id == first.id and again.leave is False and other.id != first.id
    assert await store.seen_uids(first.id) == {"u1"}
    assert await store.load_settings() == settings
    assert await store.load_directory() == directory
    (only_b,) = await store.replace_configuration(settings, directory, [record("b")])
    assert only_b.id == other.id
    assert await store.seen_uids(first.id) == set()
    assert first.id not in await store.load_statuses()


async def test_uids_are_remembered_and_forgotten_when_gone_from_the_server(store):
    (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
    await store.remember_uids(r.id, ["a", "b"])
    await store.remember_uids(r.id, ["c", "a"])  # remembering twice is harmless
    await store.remember_recipient(r.id, "c", "alice@example.test")
    assert await store.forget_uids_except(r.id, {"b", "z"}) == 2
    assert await store.seen_uids(r.id) == {"b"}
    assert await store.delivered_recipients(r.id, "c") == set()


async def test_per_recipient_progress(store):
    (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
    await store.remember_recipient(r.id, "u", "alice@example.test")
    await store.remember_recipient(r.id, "u", "bob@example.test")
    assert await store.delivered_recipients(r.id, "u") == {"alice@example.test", "bob@example.test"}
    await store.forget_recipients(r.id, "u")
    assert await store.delivered_recipients(r.id, "u") == set()


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
    assert await store.acquire_lease(r.id, "worker-b", 0)
    assert await store.acquire_lease(r.id, "worker-a", 60), "an expired lease can be taken over"
