"""SMTP delivery to a real SMTP server (aiosmtpd) started by the test on
127.0.0.1: the DSN parameters it received, refused and deferred recipients,
the reply after the data, STARTTLS verified with the test CA, AUTH, and the
core's delivery status notifications going out through the relay."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aiosmtpd.smtp import MISSING, SMTP, AuthResult
from rpop_delivery_smtp import SmtpAgent, make_agent

from rpopcore.api import Envelope, MessageSpool, Outcome, Recipient, RecipientOutcome, RetrievedMessage
from rpopcore.testing import free_port

#: The site file's folder (only relative paths would be resolved against it).
SITE = Path("/srv/rpop")
MAIL = b"Return-Path: <old@isp.test>\nFrom: carol@isp.test\nSubject: relayed\n\nline one\n.dot line\n"


class DsnSMTP(SMTP):
    """aiosmtpd's server answers any RCPT parameter with 555; this one knows
    RFC 3461's NOTIFY and ORCPT and hands them to the handler as sent
    (aiosmtpd itself would upper-case them)."""

    async def smtp_RCPT(self, arg):
        if await self.check_helo_needed() or await self.check_auth_needed("RCPT"):
            return
        if not self.envelope.mail_from:
            await self.push("503 Error: need MAIL command")
            return
        address, params = self._getaddr(self._strip_command_keyword("TO:", arg or "") or "")
        if not address:
            await self.push("501 Syntax: RCPT TO: <address>")
            return
        options = (params or "").split()
        if any(o.split("=", 1)[0].upper() not in ("NOTIFY", "ORCPT") for o in options):
            await self.push("555 5.5.4 unknown RCPT parameter")
            return
        status = await self._call_handler_hook("RCPT", address, options)
        await self.push("250 OK" if status is MISSING else status)


class Relay:
    """The test server's handler: records each transaction; ``refuse`` maps
    an address to its RCPT reply; ``data_reply`` answers the data."""

    def __init__(self, *, dsn=True, refuse=None, data_reply="250 2.0.0 queued as 42"):
        self.dsn = dsn
        self.refuse = dict(refuse or {})
        self.data_reply = data_reply
        self.rcpts: list[tuple[str, list[str]]] = []
        self.received: list[dict] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.dsn:
            responses.insert(-1, "250-DSN")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        self.rcpts.append((address, rcpt_options))
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append({"mail_from": envelope.mail_from, "mail_options": envelope.mail_options,
                              "rcpt_tos": list(envelope.rcpt_tos), "content": envelope.original_content,
                              "login": session.auth_data})
        return self.data_reply


@pytest.fixture
async def relay():
    """A factory: ``await relay(handler, **SMTP keywords)`` -> the port of a
    server on 127.0.0.1 running in this test's event loop."""
    loop = asyncio.get_running_loop()
    servers = []

    async def start(handler, server_class=DsnSMTP, **kwargs) -> int:
        server = await loop.create_server(
            lambda: server_class(handler, hostname="relay.test", loop=loop, **kwargs), "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def tls_context(server_cert):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*server_cert)
    return context


def retrieved(data: bytes = MAIL) -> RetrievedMessage:
    spool = MessageSpool()
    spool.write(data)
    spool.finish()
    return RetrievedMessage("uid1", 1, spool)


async def deliver(agent, env: Envelope, data: bytes = MAIL):
    message = retrieved(data)
    try:
        return await agent.deliver(message, env, env.recipients)
    finally:
        message.close()
        await agent.close()


def outcomes_of(results):
    return [(o.recipient.address, o.outcome) for o in results]


def accept_only(login: bytes, password: bytes):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == (login, password)
        # handled=False: aiosmtpd sends the 535 itself
        return AuthResult(success=ok, handled=False, auth_data=auth_data)
    return authenticator


# --- the envelope ---------------------------------------------------------------


async def test_notify_and_orcpt_follow_each_recipients_report_flag(relay):
    handler = Relay(dsn=True)
    port = await relay(handler)
    env = Envelope(sender="carol@isp.test", recipients=(
        Recipient("alice@example.net", report_failure=True, original="Al@Example.TEST", local=False),
        Recipient("bob@example.net", report_failure=False, local=False),
        Recipient("dave@example.net", report_failure=True, original="d+x=y é@example.test", local=False),
    ))

    results = await deliver(make_agent({"host": "127.0.0.1", "port": port}, SITE), env)

    assert [o.outcome for o in results] == [Outcome.DELIVERED] * 3
    assert "250 2.0.0 queued as 42" in results[0].detail
    assert handler.rcpts == [
        ("alice@example.net", ["NOTIFY=FAILURE", "ORCPT=rfc822;Al@Example.TEST"]),
        ("bob@example.net", ["NOTIFY=NEVER"]),
        ("dave@example.net", ["NOTIFY=FAILURE", "ORCPT=rfc822;d+2Bx+3Dy+20+C3+A9@example.test"]),
    ]
    [got] = handler.received
    assert got["mail_from"] == "carol@isp.test"
    assert got["mail_options"] == ["BODY=8BITMIME"]
    # no Return-Path for a relay, the old one removed; CRLF; the dot line unstuffed by the server
    assert got["content"] == b"From: carol@isp.test\r\nSubject: relayed\r\n\r\nline one\r\n.dot line\r\n"


async def test_without_dsn_no_rcpt_parameters_are_sent(relay):
    # aiosmtpd's own SMTP offers no DSN and refuses any RCPT parameter
    handler = Relay(dsn=False)
    port = await relay(handler, server_class=SMTP)
    env = Envelope(sender="carol@isp.test", recipients=(
        Recipient("alice@example.net", report_failure=True, original="alice@example.net"),))

    results = await deliver(SmtpAgent(host="127.0.0.1", port=port, timeout=5), env)

    assert outcomes_of(results) == [("alice@example.net", Outcome.DELIVERED)]
    assert handler.rcpts == [("alice@example.net", [])]


async def test_a_refused_recipient_is_permanent_a_deferred_one_temporary(relay):
    handler = Relay(refuse={"bob@example.net": "550 5.1.1 no such user here",
                            "carol@example.net": "451 4.3.0 greylisted, try later"})
    port = await relay(handler)
    env = Envelope(sender="s@isp.test", recipients=tuple(
        Recipient(f"{n}@example.net", local=False) for n in ("bob", "alice", "carol")))

    bob, alice, carol = await deliver(SmtpAgent(host="127.0.0.1", port=port, timeout=5), env)

    assert (bob.outcome, alice.outcome, carol.outcome) == (Outcome.PERMANENT, Outcome.DELIVERED, Outcome.TEMPORARY)
    assert "no such user here" in bob.detail and "greylisted" in carol.detail
    [got] = handler.received
    assert got["rcpt_tos"] == ["alice@example.net"]


@pytest.mark.parametrize("reply, outcome", [("554 5.6.0 content refused", Outcome.PERMANENT),
                                            ("452 4.3.1 out of space", Outcome.TEMPORARY)])
async def test_the_reply_after_the_data_decides_every_accepted_recipient(relay, reply, outcome):
    port = await relay(Relay(data_reply=reply, refuse={"bob@example.net": "550 5.1.1 unknown"}))
    env = Envelope(sender="s@isp.test", recipients=tuple(
        Recipient(f"{n}@example.net", local=False) for n in ("alice", "bob", "carol")))

    results = await deliver(SmtpAgent(host="127.0.0.1", port=port, timeout=5), env)

    assert [o.outcome for o in results] == [outcome, Outcome.PERMANENT, outcome]
    assert reply in results[0].detail and reply in results[2].detail


async def test_a_closed_port_is_temporary():
    env = Envelope(sender="s@isp.test", recipients=(Recipient("alice@example.net", local=False),))

    [result] = await deliver(SmtpAgent(host="127.0.0.1", port=free_port(), timeout=5), env)

    assert result.outcome is Outcome.TEMPORARY
    assert "cannot connect" in result.detail


# --- STARTTLS and AUTH --------------------------------------------------------------


async def test_starttls_verified_with_the_test_ca_then_auth_plain(relay, tls_context, test_ca):
    handler = Relay()
    port = await relay(handler, tls_context=tls_context, require_starttls=True, auth_require_tls=True,
                       authenticator=accept_only(b"rpop", b"s3cret pass"))
    agent = make_agent({"host": "127.0.0.1", "port": port, "starttls": True, "timeout": "5s", "ca_file": str(test_ca.ca_pem_path),
                        "username": "rpop", "password": "s3cret pass", "helo": "rpop.example.test"}, SITE)
    env = Envelope(sender="s@isp.test", recipients=(Recipient("alice@example.net", local=False),))

    results = await deliver(agent, env)

    # require_starttls: the server takes no MAIL before TLS; auth_require_tls: no AUTH before it
    assert outcomes_of(results) == [("alice@example.net", Outcome.DELIVERED)]
    assert handler.received[0]["login"].login == b"rpop"


async def test_auth_login_when_plain_is_not_offered(relay, tls_context, test_ca):
    handler = Relay()
    port = await relay(handler, tls_context=tls_context, auth_exclude_mechanism=["PLAIN"],
                       authenticator=accept_only(b"rpop", b"pw"))
    agent = make_agent({"host": "127.0.0.1", "port": port, "starttls": True, "timeout": "5s", "ca_file": str(test_ca.ca_pem_path),
                        "username": "rpop", "password": "pw"}, SITE)

    results = await deliver(agent, Envelope(sender="s@isp.test", recipients=(Recipient("a@example.net"),)))

    assert [o.outcome for o in results] == [Outcome.DELIVERED]
    assert handler.received[0]["login"].login == b"rpop"


async def test_refused_credentials_are_temporary_and_never_shown(relay, tls_context, test_ca):
    handler = Relay()
    port = await relay(handler, tls_context=tls_context, authenticator=accept_only(b"rpop", b"right"))
    agent = make_agent({"host": "127.0.0.1", "port": port, "starttls": True, "timeout": "5s", "ca_file": str(test_ca.ca_pem_path),
                        "username": "rpop", "password": "wrong-password"}, SITE)

    [result] = await deliver(agent, Envelope(sender="s@isp.test", recipients=(Recipient("a@example.net"),)))

    assert result.outcome is Outcome.TEMPORARY
    assert "refused the credentials of 'rpop'" in result.detail and "wrong-password" not in result.detail
    assert handler.received == []


async def test_an_unverifiable_certificate_is_temporary_never_clear_text(relay, tls_context):
    handler = Relay()
    port = await relay(handler, tls_context=tls_context)
    # the system's CAs do not know the test CA
    agent = make_agent({"host": "127.0.0.1", "port": port, "starttls": True}, SITE)

    [result] = await deliver(agent, Envelope(sender="s@isp.test", recipients=(Recipient("a@example.net"),)))

    assert result.outcome is Outcome.TEMPORARY
    assert "TLS failed" in result.detail and "certificate" in result.detail
    assert handler.received == []


async def test_starttls_not_offered_is_temporary(relay):
    handler = Relay()
    port = await relay(handler)
    agent = make_agent({"host": "127.0.0.1", "port": port, "starttls": True, "tls_verify": False}, SITE)

    [result] = await deliver(agent, Envelope(sender="s@isp.test", recipients=(Recipient("a@example.net"),)))

    assert result.outcome is Outcome.TEMPORARY
    assert "does not offer STARTTLS" in result.detail
    assert handler.received == []


# --- the core's reports through the relay -------------------------------------------


async def test_a_delivery_status_notification_goes_out_with_the_null_sender(relay, tmp_path):
    handler = Relay()
    port = await relay(handler)
    # what the core builds from [bounces] relay = "127.0.0.1:<port>", and the
    # envelope it gives a report: the null sender, the original sender as a
    # foreign recipient who is never reported to again.
    agent = make_agent({"host": "127.0.0.1", "port": port}, tmp_path)
    carol = Recipient("carol@isp.test", report_failure=False, original="carol@isp.test", local=False)

    [result] = await deliver(agent, Envelope(sender="", recipients=(carol,)))

    assert result.outcome is Outcome.DELIVERED
    [got] = handler.received
    assert (got["mail_from"], got["rcpt_tos"]) == ("<>", ["carol@isp.test"])
    assert handler.rcpts == [("carol@isp.test", ["NOTIFY=NEVER", "ORCPT=rfc822;carol@isp.test"])]


class HeloOnlySMTP(SMTP):
    async def smtp_EHLO(self, hostname):
        await self.push("502 5.5.1 EHLO not implemented")


async def test_a_server_that_knows_only_helo(relay):
    handler = Relay()
    port = await relay(handler, server_class=HeloOnlySMTP)
    env = Envelope(sender="s@isp.test", recipients=(Recipient("a@example.net", report_failure=True, original="a@x"),))

    results = await deliver(make_agent({"host": "127.0.0.1", "port": port, "helo": "rpop.example.test"}, SITE), env)

    assert [o.outcome for o in results] == [Outcome.DELIVERED]
    # no ESMTP: no BODY=, no DSN parameters
    assert handler.received[0]["mail_options"] == [] and handler.rcpts == [("a@example.net", [])]
