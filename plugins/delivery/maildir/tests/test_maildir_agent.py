"""The Maildir delivery agent on its own: layout, names, durability, group
commit, and which failures are temporary."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import rpop_delivery_maildir as maildir

from rpopcore.api import Envelope, MessageSpool, Outcome, Recipient, RetrievedMessage
from rpopcore.testing.contract import DeliveryAgentContract


def message(text: bytes, uid: str = "u1") -> RetrievedMessage:
    spool = MessageSpool()
    spool.write(text)
    spool.finish()
    return RetrievedMessage(uid, 1, spool)


ENVELOPE = Envelope(sender="s@far.test", recipients=(Recipient("alice@example.test"), Recipient("bob@example.test")))


async def test_each_recipient_gets_a_copy_in_new_named_with_its_size(tmp_path):
    agent = maildir.make_agent({"root": "mail"}, tmp_path)
    outcomes = await agent.deliver(message(b"Return-Path: <old@x>\nSubject: hi\n\nbody\n"), ENVELOPE, list(ENVELOPE.recipients))
    assert [o.outcome for o in outcomes] == [Outcome.DELIVERED, Outcome.DELIVERED]
    for user in ("alice", "bob"):
        folder = tmp_path / "mail" / "example.test" / user
        assert {p.name for p in folder.iterdir()} == {"tmp", "new", "cur"}
        (path,) = (folder / "new").iterdir()
        data = path.read_bytes()
        assert data == f"Return-Path: <s@far.test>\nDelivered-To: {user}@example.test\nSubject: hi\n\nbody\n".encode()
        assert path.name.endswith(f",S={len(data)}")
        assert list((folder / "tmp").iterdir()) == []


async def test_concurrent_deliveries_share_directory_fsyncs_and_all_arrive(tmp_path, monkeypatch):
    synced = []
    real = maildir._fsync_dir

    def counting(path):
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(maildir, "_fsync_dir", counting)
    agent = maildir.make_agent({}, tmp_path)
    one = Envelope(sender="", recipients=(Recipient("alice@example.test"),))
    await agent.deliver(message(b"Subject: first\n\nx\n"), one, list(one.recipients))  # creates the folder
    synced.clear()
    n = 64
    results = await asyncio.gather(*(
        agent.deliver(message(f"Subject: {i}\n\n{'y' * 5000}\n".encode()), one, list(one.recipients)) for i in range(n)
    ))
    assert all(r[0].outcome is Outcome.DELIVERED for r in results)
    new = tmp_path / "mail" / "example.test" / "alice" / "new"
    assert len(list(new.iterdir())) == n + 1
    assert 1 <= len([p for p in synced if p == new]) <= n, "never more than one directory fsync per file"


async def test_an_address_that_cannot_name_a_folder_is_permanent(tmp_path):
    agent = maildir.make_agent({}, tmp_path)
    bad = Recipient("../escape@example.test")
    (outcome,) = await agent.deliver(message(b"Subject: x\n\nx\n"), Envelope("", (bad,)), [bad])
    assert outcome.outcome is Outcome.PERMANENT
    assert not (tmp_path / "escape").exists()


async def test_a_folder_that_cannot_be_written_is_temporary_and_recovers(tmp_path):
    agent = maildir.make_agent({}, tmp_path)
    blocker = tmp_path / "mail" / "example.test" / "alice"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    alice = Recipient("alice@example.test")
    (outcome,) = await agent.deliver(message(b"Subject: x\n\nx\n"), Envelope("", (alice,)), [alice])
    assert outcome.outcome is Outcome.TEMPORARY and "cannot write" in outcome.detail
    blocker.unlink()
    (outcome,) = await agent.deliver(message(b"Subject: x\n\nx\n"), Envelope("", (alice,)), [alice])
    assert outcome.outcome is Outcome.DELIVERED


def test_group_commit_one_directory_fsync_covers_every_rename_before_it(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(maildir, "_fsync_dir", synced.append)
    sync = maildir._DirectorySync(tmp_path)
    tickets = [sync.after_rename() for _ in range(3)]
    sync.make_durable(tickets[2])
    assert synced == [tmp_path]
    sync.make_durable(tickets[0])  # an earlier rename: already covered
    sync.make_durable(tickets[1])
    assert synced == [tmp_path]
    later = sync.after_rename()
    sync.make_durable(later)  # a rename after the fsync began needs a new one
    assert synced == [tmp_path, tmp_path]


async def test_a_staged_copy_is_invisible_until_committed(tmp_path):
    agent = maildir.make_agent({"root": "mail"}, tmp_path)
    alice = ENVELOPE.recipients[0]
    copies, failures = await agent.stage(message(b"Subject: s\n\nx\n"), ENVELOPE, [alice])
    folder = tmp_path / "mail" / "example.test" / "alice"
    assert failures == [] and len(list((folder / "tmp").iterdir())) == 1 and list((folder / "new").iterdir()) == []
    (outcome,) = await agent.commit(copies)
    assert outcome.outcome is Outcome.DELIVERED and Path(outcome.detail) == folder / "new" / Path(copies[0].token).name
    assert list((folder / "tmp").iterdir()) == []
    await agent.close()


async def test_recovery_tells_committed_copies_from_ones_that_never_became_visible(tmp_path):
    """What the journal relies on after a kill: a copy still in tmp/ never
    arrived (and is removed); one in new/, or moved to cur/ by a mail reader,
    did."""
    agent = maildir.make_agent({"root": "mail"}, tmp_path)
    alice = ENVELOPE.recipients[0]
    staged = [(await agent.stage(message(f"Subject: {i}\n\nx\n".encode()), ENVELOPE, [alice]))[0][0] for i in range(4)]
    await agent.commit(staged[1:])
    new = Path(staged[2].token)
    new.rename(new.parent.parent / "cur" / f"{new.name}:2,S")  # read by a mail reader
    Path(staged[3].token).unlink()  # read and deleted: cannot be told; retrieving again loses nothing
    assert await agent.recover([c.token for c in staged]) == [False, True, True, False]
    folder = tmp_path / "mail" / "example.test" / "alice"
    assert list((folder / "tmp").iterdir()) == []
    await agent.close()


async def test_files_a_killed_delivery_left_in_tmp_are_removed_after_36_hours(tmp_path):
    import os
    import time

    folder = tmp_path / "mail" / "example.test" / "alice"
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True)
    stale, fresh = folder / "tmp" / "1.M1P1Q1.old", folder / "tmp" / "2.M2P2Q2.recent"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 37 * 3600
    os.utime(stale, (old, old))
    agent = maildir.make_agent({"root": "mail"}, tmp_path)
    await agent.deliver(message(b"Subject: s\n\nx\n"), ENVELOPE, [ENVELOPE.recipients[0]])
    assert {p.name for p in (folder / "tmp").iterdir()} == {fresh.name}
    await agent.close()


class TestMaildirContract(DeliveryAgentContract):
    """The contract every delivery agent passes."""

    @pytest.fixture
    def agent(self, tmp_path):
        return maildir.make_agent({"root": "mail"}, tmp_path)

    @pytest.fixture
    def received(self, tmp_path):
        def read(address: str) -> list[bytes]:
            user, _, domain = address.partition("@")
            paths = sorted((tmp_path / "mail" / domain / user / "new").glob("*"), key=lambda p: p.stat().st_mtime_ns)
            return [p.read_bytes() for p in paths]

        return read
