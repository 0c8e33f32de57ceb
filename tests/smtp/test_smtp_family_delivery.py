"""One message through one session, as a delivery agent reports it: every
recipient gets an outcome, and nothing raises for a delivery failure."""

from __future__ import annotations

import pytest

from rpopcore.message import MessageSpool, RetrievedMessage
from rpopcore.model import Envelope, Outcome, Recipient
from rpopcore.smtp import delivery
from rpopcore.smtp.client import ConnectOptions, LmtpClient, SmtpClient
from rpopcore.testing.dovecot import free_port
from rpopcore.testing.scripted_smtp import ScriptedLmtp


async def deliver(client, envelope: Envelope, *, dsn: bool = False):
    spool = MessageSpool()
    spool.write(b"Return-Path: <x@y>\nSubject: hi\n\nbody\n")
    spool.finish()
    message = RetrievedMessage("uid1", 1, spool)
    try:
        return await delivery.deliver(client, message, envelope, envelope.recipients, dsn=dsn)
    finally:
        message.close()


def outcomes(results):
    return [(o.outcome, o.detail) for o in results]


@pytest.mark.parametrize("code, outcome", [(250, Outcome.DELIVERED), (251, Outcome.DELIVERED),
                                           (450, Outcome.TEMPORARY), (354, Outcome.TEMPORARY),
                                           (550, Outcome.PERMANENT), (999, Outcome.TEMPORARY)])
def test_what_a_reply_code_means_for_a_recipient(code, outcome):
    assert delivery.outcome_of(code) is outcome


async def test_replies_become_outcomes_with_the_server_named(scripted):
    server = await scripted(ScriptedLmtp, replies={"RCPT b@x.test": "550 5.1.1 unknown"},
                            after_data=["452 4.2.2 over quota"])
    client = LmtpClient(ConnectOptions(host="127.0.0.1", port=server.port, timeout=5))
    env = Envelope("s@isp.test", (Recipient("a@x.test"), Recipient("b@x.test")))

    results = await deliver(client, env)

    peer = f"LMTP server 127.0.0.1:{server.port}"
    assert outcomes(results) == [(Outcome.TEMPORARY, f"{peer}: 452 4.2.2 over quota"),
                                 (Outcome.PERMANENT, f"{peer}: 550 5.1.1 unknown")]
    # no trace fields, the old Return-Path left out
    assert server.data == b"Subject: hi\r\n\r\nbody\r\n"


@pytest.mark.parametrize("dsn, rcpt", [(True, "RCPT TO:<a@x.test> NOTIFY=FAILURE ORCPT=rfc822;A@X.test"),
                                       (False, "RCPT TO:<a@x.test>")])
async def test_dsn_parameters_only_when_asked_for(scripted, dsn, rcpt):
    server = await scripted(extensions=("DSN",))
    client = SmtpClient(ConnectOptions(host="127.0.0.1", port=server.port, timeout=5))
    env = Envelope("s@isp.test", (Recipient("a@x.test", report_failure=True, original="A@X.test"),))

    [result] = await deliver(client, env, dsn=dsn)

    assert result.outcome is Outcome.DELIVERED
    assert server.commands[2] == rcpt


async def test_unwritable_addresses_are_permanent_and_never_sent(scripted):
    server = await scripted()
    client = SmtpClient(ConnectOptions(host="127.0.0.1", port=server.port, timeout=5))
    env = Envelope("s@isp.test", (Recipient("a@x>\r\nRCPT TO:<root@x"), Recipient("b@x.test")))

    results = await deliver(client, env)

    assert [o.outcome for o in results] == [Outcome.PERMANENT, Outcome.DELIVERED]
    assert results[0].detail == "'a@x>\\r\\nRCPT TO:<root@x' cannot be written in RCPT TO"
    assert not any("root@" in c for c in server.commands)

    bad_sender = Envelope("s@x\r\nRSET", (Recipient("b@x.test"),))
    client = SmtpClient(ConnectOptions(host="127.0.0.1", port=server.port, timeout=5))
    assert outcomes(await deliver(client, bad_sender)) == [
        (Outcome.PERMANENT, "the sender 's@x\\r\\nRSET' cannot be written in MAIL FROM")]


async def test_a_session_that_cannot_start_leaves_everyone_temporary(scripted):
    port = free_port()
    client = SmtpClient(ConnectOptions(host="127.0.0.1", port=port, timeout=5))
    env = Envelope("s@isp.test", (Recipient("a@x.test"), Recipient("b@x.test")))

    results = await deliver(client, env)

    assert [o.outcome for o in results] == [Outcome.TEMPORARY] * 2
    assert all(o.detail.startswith(f"cannot connect to the SMTP server 127.0.0.1:{port}: ") for o in results)

    server = await scripted(greeting=None)
    client = SmtpClient(ConnectOptions(host="127.0.0.1", port=server.port, timeout=0.2))
    assert outcomes(await deliver(client, env)) == [
        (Outcome.TEMPORARY, f"the SMTP server 127.0.0.1:{server.port} did not answer within 0.2s")] * 2

    server = await scripted(greeting=b"hello there\r\n")
    client = SmtpClient(ConnectOptions(host="127.0.0.1", port=server.port, timeout=5))
    assert outcomes(await deliver(client, env)) == [
        (Outcome.TEMPORARY, f"SMTP server 127.0.0.1:{server.port}: not an SMTP reply: b'hello there\\r\\n'")] * 2
