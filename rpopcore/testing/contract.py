"""Contract tests: the behaviour rpop relies on from every delivery agent,
authentication mechanism and state store, as test classes a plugin's own
tests subclass and feed with fixtures::

    from rpopcore.testing.contract import DeliveryAgentContract

    class TestMyAgent(DeliveryAgentContract):
        @pytest.fixture
        def agent(self, tmp_path):
            return make_agent({"root": "mail"}, tmp_path)

        @pytest.fixture
        def received(self, tmp_path):
            return lambda address: read_my_mailbox(tmp_path, address)

Every test of a contract class runs against the plugin; each class's
docstring names the fixtures it needs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from typing import Callable

import attrs
import pytest

from rpopcore.api import (
    Directory,
    Domain,
    Envelope,
    MessageSpool,
    ModuleSettings,
    Outcome,
    PendingCopy,
    PollStatus,
    Recipient,
    RecordKind,
    RemoteRecord,
    RetrievedMessage,
    SecretRef,
    WebSession,
)
from rpopcore.plugins import plugin_manager
from rpopcore.testing.sites import poll_one, remote

# --- delivery agents ----------------------------------------------------------

#: The message every delivery test sends: a Return-Path the copy must not
#: keep, a field the envelope removes, a body line that begins with a dot.
CONTRACT_MESSAGE = (
    b"Return-Path: <old@isp.test>\nX-Remove-Me: secret routing\nFrom: carol@isp.test\n"
    b"Subject: contract\n\nline one\n.dot line\n"
)
#: How every copy ends: the header without the removed fields, the body as sent.
CONTRACT_TAIL = b"From: carol@isp.test\nSubject: contract\n\nline one\n.dot line\n"


def retrieved(data: bytes = CONTRACT_MESSAGE, uid: str = "u1") -> RetrievedMessage:
    """A retrieved message holding ``data`` (LF line ends, as rpop spools it)."""
    spool = MessageSpool()
    spool.write(data)
    spool.finish()
    return RetrievedMessage(uid, 1, spool)


class DeliveryAgentContract:
    """What every delivery agent does.  Fixtures to provide:

    - ``agent``: an agent made by the plugin's factory, delivering to
      mailboxes of ``alice@example.test`` and ``bob@example.test``;
    - ``received``: ``received(address)`` -> the copies that address holds,
      oldest first, as bytes with LF line ends.
    """

    async def _deliver(self, agent, envelope: Envelope, data: bytes = CONTRACT_MESSAGE, uid: str = "u1"):
        message = retrieved(data, uid)
        try:
            return await agent.deliver(message, envelope, list(envelope.recipients))
        finally:
            message.close()

    async def test_each_recipient_gets_one_whole_copy_and_one_outcome_in_order(self, agent, received):
        envelope = Envelope(sender="carol@isp.test",
                            recipients=(Recipient("bob@example.test"), Recipient("alice@example.test")),
                            remove_fields={"x-remove-me"})
        outcomes = await self._deliver(agent, envelope)
        await agent.close()
        assert [(o.recipient.address, o.outcome) for o in outcomes] == [
            ("bob@example.test", Outcome.DELIVERED), ("alice@example.test", Outcome.DELIVERED)]
        for address in ("alice@example.test", "bob@example.test"):
            (copy,) = received(address)
            assert copy.endswith(CONTRACT_TAIL), f"the copy for {address} lost or changed part of the message"
            assert b"X-Remove-Me" not in copy, "a field the envelope removes was delivered"
            assert b"<old@isp.test>" not in copy, "the message's old Return-Path was delivered"

    async def test_concurrent_deliveries_all_arrive_once(self, agent, received):
        envelope = Envelope(sender="carol@isp.test", recipients=(Recipient("alice@example.test"),))
        bodies = [CONTRACT_MESSAGE.replace(b"line one", f"message {n}".encode()) for n in range(8)]
        results = await asyncio.gather(*(self._deliver(agent, envelope, body, f"u{n}") for n, body in enumerate(bodies)))
        await agent.close()
        assert all(o.outcome is Outcome.DELIVERED for outcomes in results for o in outcomes)
        copies = received("alice@example.test")
        assert sorted(c[c.index(b"\n\n") + 2:] for c in copies) == sorted(
            b[b.index(b"\n\n") + 2:] for b in bodies)

    async def test_an_agent_made_and_closed_without_a_delivery_leaves_no_copy(self, agent, received):
        # The core makes an agent when a site opens only to check its options.
        await agent.close()
        assert received("alice@example.test") == []


# --- authentication mechanisms -------------------------------------------------


@attrs.frozen
class LoginServer:
    """A POP3 server that logs ``account`` in with ``password`` through the
    mechanism under test, and holds at least one message."""

    host: str
    port: int
    account: str
    password: str
    #: more keys of the record (``tls = true``, ``apop = true``, ...)
    record_keys: dict = attrs.field(factory=dict)


class AuthMechanismContract:
    """What every authentication mechanism does.  Fixtures to provide:

    - ``mechanism_name``: the name a record's ``auth`` key gives;
    - ``login_server``: a :class:`LoginServer` (may be async), e.g. from the
      ``pop3_server`` or ``dovecot_factory`` fixture;
    - ``mechanism_plugins`` (optional): plugin objects to register when the
      plugin is not installed.
    """

    @pytest.fixture
    def mechanism_plugins(self):
        return ()

    def _mechanism(self, mechanism_name, mechanism_plugins):
        pm = plugin_manager()
        for plugin in mechanism_plugins:
            if not pm.is_registered(plugin):  # installed too: its entry point loaded it
                pm.register(plugin)
        found = [m for contributed in pm.hook.rpop_auth_mechanisms() for m in contributed if m.name == mechanism_name]
        assert len(found) == 1, f"exactly one installed plugin must contribute the mechanism {mechanism_name!r}"
        return found[0]

    def test_the_mechanism_declares_name_rank_and_whether_it_sends_the_password(self, mechanism_name,
                                                                                   mechanism_plugins):
        mechanism = self._mechanism(mechanism_name, mechanism_plugins)
        assert mechanism.name == mechanism.name.lower() and mechanism.name != "auto"
        assert isinstance(mechanism.auto_rank, int)
        assert isinstance(mechanism.sends_password_in_clear, bool)

    async def test_the_right_password_logs_in_and_mail_is_delivered(self, mechanism_name, mechanism_plugins,
                                                                  login_server, rpop_site):
        server = login_server
        site = await rpop_site(remote(server.host, server.port, account=server.account, password=server.password,
                                      auth=mechanism_name, **server.record_keys),
                               delivery="capture", plugins=mechanism_plugins)
        result = await poll_one(site)
        assert result.error is None, f"{result.error}: {result.detail}"
        assert result.retrieved >= 1 and result.delivered == result.retrieved

    async def test_a_wrong_password_is_auth_failed_and_the_secret_is_not_in_the_detail(
            self, mechanism_name, mechanism_plugins, login_server, rpop_site):
        server = login_server
        wrong = "wrong-" + server.password[::-1]
        site = await rpop_site(remote(server.host, server.port, account=server.account, password=wrong,
                                      auth=mechanism_name, **server.record_keys),
                               delivery="capture", plugins=mechanism_plugins)
        result = await poll_one(site)
        assert result.error == "auth-failed", f"{result.error}: {result.detail}"
        assert wrong not in result.detail and server.password not in result.detail


# --- state stores ---------------------------------------------------------------


def record(account="a", owner="alice@example.test", **kw) -> RemoteRecord:
    return RemoteRecord(kind=RecordKind.REMOTE, owner=owner, account=account, host="pop.isp.test:1110",
                        secret=SecretRef("stored", "token"), **kw)



LEASE_HOLDER = """
import asyncio, sys
from pathlib import Path
import json
from rpopcore.plugins import plugin_manager

async def hold():
    factories = {{}}
    for contributed in plugin_manager().hook.rpop_state_stores():
        factories.update(contributed)
    store = factories[{name!r}](json.loads({options!r}), Path({folder!r}))
    await store.open()
    await store.announce_worker("run", 3)
    assert await store.acquire_lease({record_id}, "killed-worker", 600)
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(hold())
"""


MAILBOX = "a@pop.isp.test"
#: Seconds within which a killed holder's lease must end.
LEASE_FREED_WITHIN = 2.0


class StateStoreContract:
    """What every state store does.  Fixtures to provide:

    - ``store_name``: the name ``[state] plugin`` gives;
    - ``store_options`` (optional): the rest of the ``[state]`` table.

    The store is made by the installed plugin's factory in a temporary
    folder (its base folder), opened, and closed after each test.
    """

    @pytest.fixture
    def store_options(self) -> dict:
        return {}

    @pytest.fixture
    async def store(self, store_name, store_options, tmp_path):
        factories: dict[str, Callable] = {}
        for contributed in plugin_manager().hook.rpop_state_stores():
            factories.update(contributed)
        assert store_name in factories, f"no installed plugin provides the state store {store_name!r}"
        store = factories[store_name](dict(store_options), tmp_path)
        await store.open()
        yield store
        await store.close()

    async def test_a_new_store_has_defaults_and_nothing_else(self, store):
        assert await store.load_settings() == ModuleSettings()
        assert await store.load_directory() == Directory()
        assert await store.list_records() == []
        assert await store.load_statuses() == {}


    async def test_records_round_trip_exactly(self, store):
        saved = await store.save_record(record(leave=False, apop=True, poll_every=None, options={"x": 1}))
        assert saved.id is not None
        assert await store.get_record(saved.id) == saved
        assert await store.list_records() == [saved]
        await store.delete_record(saved.id)
        assert await store.get_record(saved.id) is None


    async def test_replace_configuration_keeps_ids_of_the_same_mailbox_whatever_else_changes(self, store):
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


    async def test_a_removed_mailbox_keeps_its_uids_so_adding_it_back_retrieves_nothing_twice(self, store):
        (first,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
        await store.remember_uids(first.mailbox, ["u1", "u2"])
        (only_b,) = await store.replace_configuration(ModuleSettings(), Directory(), [record("b")])
        assert first.id not in await store.load_statuses()
        assert [r.mailbox for r in await store.list_records()] == [only_b.mailbox]
        assert await store.seen_uids(MAILBOX) == {"u1", "u2"}
        await store.delete_record(only_b.id)
        (back,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
        assert await store.seen_uids(back.mailbox) == {"u1", "u2"}


    async def test_uids_are_remembered_and_forgotten_when_gone_from_the_server(self, store):
        await store.remember_uids(MAILBOX, ["a", "b"])
        await store.remember_uids(MAILBOX, ["c", "a"])  # remembering twice is harmless
        await store.remember_recipients(MAILBOX, "d", ["alice@example.test"])
        assert await store.forget_uids_except(MAILBOX, {"b", "z"}) == 2
        assert await store.seen_uids(MAILBOX) == {"b"}
        assert await store.recipient_progress(MAILBOX) == {}
        assert await store.seen_uids("other@pop.isp.test") == set()


    async def test_per_recipient_progress_goes_once_the_message_is_complete(self, store):
        await store.remember_recipients(MAILBOX, "u", ["alice@example.test"])
        await store.remember_recipients(MAILBOX, "u", ["bob@example.test", "alice@example.test"])
        assert await store.recipient_progress(MAILBOX) == {"u": {"alice@example.test", "bob@example.test"}}
        await store.remember_uids(MAILBOX, ["u"])
        assert await store.recipient_progress(MAILBOX) == {}
        assert await store.seen_uids(MAILBOX) == {"u"}


    async def test_the_journal_settles_visible_copies_into_uids_or_progress_and_drops_the_rest(self, store):
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


    async def test_remembering_a_uid_or_its_recipients_clears_their_journal_entries(self, store):
        await store.journal_copies([PendingCopy(MAILBOX, "u1", "a@x", "t1"), PendingCopy(MAILBOX, "u2", "a@x", "t2"),
                                             PendingCopy(MAILBOX, "u2", "b@x", "t3")])
        await store.remember_uids(MAILBOX, ["u1"])
        await store.remember_recipients(MAILBOX, "u2", ["a@x"])
        assert await store.pending_copies(MAILBOX) == [PendingCopy(MAILBOX, "u2", "b@x", "t3")]


    async def test_statuses(self, store):
        (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
        moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        status = PollStatus(r.id, last_success=moment, last_attempt=moment, error=None, retrieved=3,
                            retrieved_total=40)
        await store.save_status(status)
        assert await store.load_status(r.id) == status
        assert await store.load_statuses() == {r.id: status}


    async def test_records_and_statuses_are_read_by_id_owner_and_error(self, store):
        a, b, c = await store.replace_configuration(ModuleSettings(), Directory(), [
            record("a"), record("b", owner="bob@example.test"), record("c")])
        assert await store.list_records(ids=[c.id, a.id]) == [a, c]
        assert await store.list_records(ids=[]) == []
        assert await store.list_records(owner="alice@example.test") == [a, c]
        assert await store.list_records(owner="nobody@example.test") == []
        assert await store.count_records_by_owner() == {"alice@example.test": 2, "bob@example.test": 1}
        await store.save_status(PollStatus(a.id, error="connect-failed"))
        await store.save_status(PollStatus(b.id, error="auth-failed"))
        await store.save_status(PollStatus(c.id))
        assert set(await store.load_statuses([b.id, c.id])) == {b.id, c.id}
        assert set(await store.statuses_with_error(["connect-failed", "timeout"])) == {a.id}

    async def test_planning_reads_unplanned_and_due_records_and_keeps_plans_only_while_nothing_changed(self, store):
        now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
        hour = dt.timedelta(hours=1)

        async def to_plan(by=now, limit=100) -> list[tuple[int, dt.datetime | None]]:
            return [(e.record.id, e.planned_for) for e in await store.records_to_plan(by, limit)]

        # Given three enabled records and a disabled one, never planned,
        a, b, c, off = await store.replace_configuration(ModuleSettings(), Directory(), [
            record("a", poll_every=600), record("b", poll_every=600), record("c", poll_every=600),
            record("off", poll_every=None)])
        # the enabled ones are all to plan, the disabled one never;
        assert sorted(await to_plan()) == [(a.id, None), (b.id, None), (c.id, None)]
        assert len(await to_plan(limit=2)) == 2
        # once a and b are planned for later, only c is read now, and a an hour on (after c, unplanned);
        stamps = {e.record.id: e.stamp for e in await store.records_to_plan(now, 100)}
        await store.plan_records({a.id: (now + hour, stamps[a.id]), b.id: (now + 2 * hour, stamps[b.id])})
        assert await to_plan() == [(c.id, None)]
        assert await to_plan(now + hour) == [(c.id, None), (a.id, now + hour)]
        # applying the same configuration again keeps the plans,
        await store.replace_configuration(ModuleSettings(), Directory(), [
            record("a", poll_every=600), record("b", poll_every=600), record("c", poll_every=600),
            record("off", poll_every=None)])
        assert await to_plan() == [(c.id, None)]
        # a new status or a changed record makes it to be planned again,
        await store.save_status(PollStatus(a.id, last_attempt=now))
        await store.save_record(attrs.evolve(b, poll_every=60))
        assert sorted(await to_plan()) == [(a.id, None), (b.id, None), (c.id, None)]
        # and a plan worked out before such a change is not written over it;
        await store.plan_records({a.id: (now + hour, stamps[a.id])})
        assert (a.id, None) in await to_plan()
        # a change of the module settings makes every enabled record to be planned again.
        fresh = {e.record.id: e.stamp for e in await store.records_to_plan(now, 100)}
        await store.plan_records({rid: (now + hour, stamp) for rid, stamp in fresh.items()})
        assert await to_plan() == []
        await store.replace_configuration(ModuleSettings(processors=2), Directory(), await store.list_records())
        assert sorted(rid for rid, _ in await to_plan()) == [a.id, b.id, c.id]

    async def test_leases_let_one_holder_poll_a_record_at_a_time(self, store):
        (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
        assert await store.acquire_lease(r.id, "worker-a", 60)
        assert not await store.acquire_lease(r.id, "worker-b", 60)
        assert await store.acquire_lease(r.id, "worker-a", 60), "the holder renews its own lease"
        await store.release_lease(r.id, "worker-b")  # not the holder: no effect
        assert not await store.acquire_lease(r.id, "worker-b", 60)
        await store.release_lease(r.id, "worker-a")
        assert await store.acquire_lease(r.id, "worker-b", 60)




    async def test_every_mailbox_with_state_is_listed_whether_or_not_a_record_uses_it(self, store):
        await store.remember_uids("b@pop.isp.test", ["u1"])
        await store.remember_recipients("c@pop.isp.test", "u2", ["alice@example.test"])
        await store.journal_copies([PendingCopy("a@pop.isp.test", "u3", "alice@example.test", "t1")])
        assert await store.mailboxes_with_state() == ["a@pop.isp.test", "b@pop.isp.test", "c@pop.isp.test"]
        assert await store.schema_version() >= 1

    async def test_announcing_again_changes_this_worker_s_entry_and_adds_none(self, store):
        await store.announce_worker("run", 3)
        await store.announce_worker("run", 7)  # 'processors' changed while it runs
        (worker,) = await store.list_workers()
        assert (worker.pid, worker.role, worker.processors) == (os.getpid(), "run", 7)

    async def test_a_lease_whose_holder_was_killed_is_free_at_once(self, store, store_name, store_options, tmp_path):
        (r,) = await store.replace_configuration(ModuleSettings(), Directory(), [record()])
        holder = subprocess.Popen(
            [sys.executable, "-c", LEASE_HOLDER.format(name=store_name, options=json.dumps(store_options),
                                                       folder=str(tmp_path), record_id=r.id)],
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
        # A lock held by the process (SQLite) ends at once; a database
        # session (PostgreSQL) as soon as the server reads the end of the
        # killed process's connection: within LEASE_FREED_WITHIN seconds.
        deadline = time.monotonic() + LEASE_FREED_WITHIN
        while not await store.acquire_lease(r.id, "this-worker", 600):
            assert time.monotonic() < deadline, "the killed process's lease ended with it"
            await asyncio.sleep(0.02)
        assert await store.list_workers() == [], "a dead worker is not listed"
        assert await store.lease_holders() == {r.id: f"{socket.gethostname()}:{os.getpid()}"}

    # --- the web interface's passwords and sessions --------------------------

    async def test_a_web_password_hash_is_kept_per_address_and_can_be_removed(self, store):
        assert await store.load_web_password(ALICE) is None
        await store.save_web_password(ALICE, "$argon2id$one")
        await store.save_web_password("bob@example.test", "$argon2id$two")
        await store.save_web_password(ALICE, "$argon2id$three")
        assert await store.load_web_password(ALICE) == "$argon2id$three"
        await store.save_web_password(ALICE, None)
        assert await store.load_web_password(ALICE) is None
        assert await store.load_web_password("bob@example.test") == "$argon2id$two"

    async def test_a_web_session_lives_until_it_expires_or_is_deleted(self, store):
        alive, ended = web_session("k1"), web_session("k2")
        await store.save_web_session(alive)
        await store.save_web_session(ended)
        await store.save_web_session(web_session("k3", minutes=-1))
        assert await store.load_web_session("k1") == alive
        await store.delete_web_session("k2")
        await store.delete_web_session("no-such-key")
        assert await store.load_web_session("k2") is None
        assert await store.load_web_session("k3") is None, "an expired session is never returned"

    async def test_changing_a_web_password_ends_that_address_s_sessions_only(self, store):
        await store.save_web_session(web_session("alice-1"))
        await store.save_web_session(web_session("bob-1", address="bob@example.test"))
        await store.save_web_password(ALICE, "$argon2id$new")
        assert await store.load_web_session("alice-1") is None
        assert (await store.load_web_session("bob-1")).address == "bob@example.test"


ALICE = "alice@example.test"


def web_session(key="k1", address=ALICE, minutes=30) -> WebSession:
    expires = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(minutes=minutes)
    return WebSession(key=key, address=address, csrf="c-" + key, expires=expires)
