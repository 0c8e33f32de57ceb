"""LMTP delivery into a real Dovecot (``dovecot-lmtpd``) started by the test:
per-recipient replies, dot-stuffing, long lines, Return-Path from the
envelope, and a server that is not there."""

from __future__ import annotations

from pathlib import Path

from rpop_delivery_lmtp import LmtpAgent, make_agent

from rpopcore.api import Envelope, MessageSpool, Outcome, Recipient, RetrievedMessage
from rpopcore.testing import free_port, poll_one, remote

#: The site file's folder (only relative paths would be resolved against it).
SITE = Path("/srv/rpop")
MAIL = b"Return-Path: <forged@elsewhere.test>\nFrom: carol@isp.test\nSubject: hello\n\nline one\nline two\n"


def retrieved(data: bytes, spill_at: int | None = None) -> RetrievedMessage:
    spool = MessageSpool() if spill_at is None else MessageSpool(spill_at=spill_at)
    spool.write(data)
    spool.finish()
    return RetrievedMessage("uid1", 1, spool)


def envelope(sender: str, *addresses: str) -> Envelope:
    return Envelope(sender=sender, recipients=tuple(Recipient(a, report_failure=True, original=a) for a in addresses))


def agent_for(dovecot) -> LmtpAgent:
    # through the factory, as the site file would make it
    return make_agent({"host": dovecot.host, "port": dovecot.lmtp_port, "timeout": "10s"}, SITE)


async def deliver(agent, data: bytes, env: Envelope):
    message = retrieved(data)
    try:
        return await agent.deliver(message, env, env.recipients)
    finally:
        message.close()
        await agent.close()


def header_and_body(stored: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = stored.partition(b"\n\n")
    return head.split(b"\n"), body


async def test_one_message_reaches_alice_and_bob(dovecot_factory):
    dovecot = dovecot_factory(users={"alice": "a", "bob": "b"}, lmtp=True, tls=False)
    env = envelope("carol@isp.test", "alice@example.test", "bob@example.test")

    outcomes = await deliver(agent_for(dovecot), MAIL, env)

    assert [(o.recipient.address, o.outcome) for o in outcomes] == [
        ("alice@example.test", Outcome.DELIVERED), ("bob@example.test", Outcome.DELIVERED)]
    for user in ("alice", "bob"):
        [stored] = dovecot.messages(user)
        head, body = header_and_body(stored)
        assert head[0] == b"Return-Path: <carol@isp.test>"
        # (Dovecot writes Delivered-To only when a transaction has one recipient)
        assert head[-2:] == [b"From: carol@isp.test", b"Subject: hello"]
        assert body == b"line one\nline two\n"


async def test_an_unknown_user_fails_for_bob_only(dovecot_factory):
    dovecot = dovecot_factory(users={"alice": "a"}, lmtp=True, tls=False)
    env = envelope("carol@isp.test", "bob@example.test", "alice@example.test")

    bob, alice = await deliver(agent_for(dovecot), MAIL, env)

    assert (alice.recipient.address, alice.outcome) == ("alice@example.test", Outcome.DELIVERED)
    assert (bob.recipient.address, bob.outcome) == ("bob@example.test", Outcome.PERMANENT)
    assert "550" in bob.detail and "bob@example.test" in bob.detail
    assert dovecot.count("alice") == 1


async def test_only_unknown_users_send_no_data(dovecot_factory):
    dovecot = dovecot_factory(users={"alice": "a"}, lmtp=True, tls=False)
    env = envelope("carol@isp.test", "bob@example.test", "dave@example.test")

    outcomes = await deliver(agent_for(dovecot), MAIL, env)

    assert [o.outcome for o in outcomes] == [Outcome.PERMANENT, Outcome.PERMANENT]
    assert dovecot.count("alice") == 0


async def test_dot_lines_and_a_long_line_arrive_as_sent(dovecot_factory):
    dovecot = dovecot_factory(users={"alice": "a"}, lmtp=True, tls=False)
    long_line = b"x" * 20000
    body = (b".leading dot\n..two dots\n.\nafter a lone dot\n" + long_line + b"\n"
            + b"filler line\n" * 30000 + b".last\n")
    data = b"Subject: dots\n\n" + body
    # spill_at: the body goes through the temporary file, in several chunks
    message = retrieved(data, spill_at=1024)
    env = envelope("carol@isp.test", "alice@example.test")
    agent = agent_for(dovecot)
    try:
        [outcome] = await agent.deliver(message, env, env.recipients)
    finally:
        message.close()
        await agent.close()

    assert outcome.outcome is Outcome.DELIVERED, outcome.detail
    [stored] = dovecot.messages("alice")
    head, stored_body = header_and_body(stored)
    assert head[-1] == b"Subject: dots"
    assert stored_body == body


async def test_return_path_is_the_envelope_sender_never_the_old_field(dovecot_factory):
    dovecot = dovecot_factory(users={"alice": "a"}, lmtp=True, tls=False)

    await deliver(agent_for(dovecot), MAIL, envelope("bounces@list.test", "alice@example.test"))
    await deliver(agent_for(dovecot), MAIL, envelope("", "alice@example.test"))

    first, second = dovecot.messages("alice")
    for stored, sender in ((first, b"<bounces@list.test>"), (second, b"<>")):
        head, _ = header_and_body(stored)
        assert [line for line in head if line.lower().startswith(b"return-path:")] == [b"Return-Path: " + sender]
        assert b"Delivered-To: alice@example.test" in head
        assert b"forged@elsewhere.test" not in stored


async def test_a_closed_port_is_temporary_for_everyone():
    agent = LmtpAgent(host="127.0.0.1", port=free_port(), timeout=5)
    env = envelope("carol@isp.test", "alice@example.test", "bob@example.test")

    outcomes = await deliver(agent, MAIL, env)

    assert [o.outcome for o in outcomes] == [Outcome.TEMPORARY, Outcome.TEMPORARY]
    assert all("cannot connect" in o.detail for o in outcomes)


async def test_a_site_polls_pop3_and_delivers_over_lmtp(dovecot_factory, rpop_site):
    # bob's mailbox on the POP3 side is polled for alice; the copy goes back
    # into the same Dovecot over LMTP, and leaves bob's mailbox.
    dovecot = dovecot_factory(users={"alice": "alice-pw", "bob": "bob-pw"}, lmtp=True, tls=False)
    dovecot.put("bob", b"Return-Path: <carol@isp.test>\nSubject: via pop3\n\nbody\n.dot\n")
    site = await rpop_site(remote(dovecot.host, dovecot.pop3_port, account="bob", password="bob-pw", leave=False),
                           delivery=f'plugin = "lmtp"\nhost = "{dovecot.host}"\nport = {dovecot.lmtp_port}')
    result = await poll_one(site)

    assert (result.retrieved, result.delivered, result.error) == (1, 1, None)
    assert dovecot.count("bob") == 0
    [stored] = dovecot.messages("alice")
    assert stored.startswith(b"Return-Path: <carol@isp.test>\n")
    assert b"Delivered-To: alice@example.test\n" in stored
    assert stored.endswith(b"\nSubject: via pop3\n\nbody\n.dot\n")
