"""The SMTP and LMTP clients against scripted servers: what goes on the wire,
which reply decides which recipient, and how a session ends when the server
misbehaves.  Reply parsing and the checks on what goes into a command are
here too."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from rpopcore.smtp.client import (
    ConnectOptions,
    LmtpClient,
    RcptTo,
    SmtpClient,
    State,
    Transaction,
)
from rpopcore.smtp.replies import (
    Reply,
    SessionBroken,
    extensions,
    parse_line,
    path_of,
    xtext,
)
from rpopcore.testing.scripted_smtp import ScriptedLmtp, ScriptedSmtp

MESSAGE = b"Subject: hi\n\n.dot\nbody\n"


def options(server, **kwargs) -> ConnectOptions:
    return ConnectOptions(**{"host": "127.0.0.1", "port": server.port, "timeout": 5, "hello_name": "rpop.test",
                             **kwargs})


def transaction(*addresses: str, sender: str = "s@isp.test") -> Transaction:
    return Transaction(sender, [RcptTo(a) for a in addresses])


async def session(client: SmtpClient, mail: Transaction, data: bytes = MESSAGE) -> None:
    try:
        await client.open()
        await client.send_mail(mail, [data])
        await client.quit()
    finally:
        await client.close()


def replies(mail: Transaction) -> list[str | None]:
    return [None if r is None else str(r) for r in mail.replies]


# --- replies and commands -----------------------------------------------------------


def test_reply_lines_and_the_extensions_of_a_hello():
    assert parse_line(b"250-PIPELINING\r\n") == (250, True, "PIPELINING")
    assert parse_line(b"250 2.0.0 ok\r\n") == (250, False, "2.0.0 ok")
    assert parse_line(b"354\n") == (354, False, "")
    hello = Reply(250, ("relay.test greets rpop.test", "PIPELINING", "auth plain LOGIN", "SIZE 1000"))
    assert extensions(hello) == {"PIPELINING": "", "AUTH": "plain LOGIN", "SIZE": "1000"}
    assert str(hello) == "250 relay.test greets rpop.test PIPELINING auth plain LOGIN SIZE 1000"


@pytest.mark.parametrize("line", [b"hello there\r\n", b"25 short\r\n", b"250+odd\r\n"])
def test_a_line_that_is_not_a_reply_breaks_the_session(line):
    with pytest.raises(SessionBroken, match="not an LMTP reply"):
        parse_line(line, "LMTP")


def test_paths():
    assert path_of("") == b"<>"
    assert path_of('"a b"@x') == b'<"a b"@x>'
    assert path_of("a@x>\r\nDATA") is None
    assert path_of("a\x7f@x") is None


def test_xtext():
    assert xtext("alice@example.test") == "alice@example.test"
    assert xtext("a+b=c d\u00e9@x") == "a+2Bb+3Dc+20d+C3+A9@x"


def test_the_peer_is_named_by_protocol_and_address():
    assert SmtpClient(ConnectOptions(host="relay.test")).peer == "SMTP server relay.test:25"
    assert LmtpClient(ConnectOptions(socket=Path("/run/lmtp"))).peer == "LMTP server /run/lmtp"


# --- the transaction ----------------------------------------------------------------


async def test_smtp_one_reply_after_the_data_decides_every_accepted_recipient(scripted):
    server = await scripted(extensions=("8BITMIME",), replies={"RCPT bob@x.test": "550 5.1.1 unknown"})
    mail = transaction("alice@x.test", "bob@x.test", "carol@x.test")

    await session(SmtpClient(options(server)), mail)

    assert replies(mail) == ["250 2.0.0 queued", "550 5.1.1 unknown", "250 2.0.0 queued"]
    assert server.commands[:2] == ["EHLO rpop.test", "MAIL FROM:<s@isp.test> BODY=8BITMIME"]
    assert server.commands[-1] == "QUIT"
    assert server.data == b"Subject: hi\r\n\r\n..dot\r\nbody\r\n"


async def test_lmtp_one_reply_per_accepted_recipient_in_order(scripted):
    server = await scripted(ScriptedLmtp, replies={"RCPT bob@x.test": "550 5.1.1 unknown"},
                            after_data=["250 2.0.0 alice saved", "452 4.2.2 carol over quota"])
    mail = transaction("alice@x.test", "bob@x.test", "carol@x.test")

    await session(LmtpClient(options(server)), mail)

    assert replies(mail) == ["250 2.0.0 alice saved", "550 5.1.1 unknown", "452 4.2.2 carol over quota"]
    assert server.commands[0] == "LHLO rpop.test"


@pytest.mark.parametrize("pipelining, sent", [(True, ["MAIL", "RCPT", "RCPT", "DATA", "QUIT"]),
                                              (False, ["MAIL", "QUIT"])], ids=["pipelined", "one by one"])
async def test_a_refused_sender_decides_everyone(scripted, pipelining, sent):
    # the server offers PIPELINING; the options decide whether it is used
    server = await scripted(ScriptedLmtp, replies={"MAIL": "451 4.3.0 try later", "DATA": "503 5.5.1 need MAIL"})
    mail = transaction("alice@x.test", "bob@x.test")

    await session(LmtpClient(options(server, pipelining=pipelining)), mail)

    assert replies(mail) == ["451 4.3.0 try later"] * 2
    assert [c.split(" ")[0] for c in server.commands[1:]] == sent
    assert server.data is None


async def test_no_recipient_accepted_sends_no_data(scripted):
    server = await scripted(extensions=("8BITMIME",), replies={"RCPT a@x.test": "550 5.1.1 unknown"})
    mail = transaction("a@x.test")

    await session(SmtpClient(options(server)), mail)

    assert replies(mail) == ["550 5.1.1 unknown"]
    assert [c.split(" ")[0] for c in server.commands] == ["EHLO", "MAIL", "RCPT", "QUIT"]


async def test_a_server_waiting_for_data_without_recipients_is_hung_up_on(scripted):
    # pipelined: every RCPT refused, yet DATA answered 354
    server = await scripted(ScriptedLmtp, replies={"RCPT a@x.test": "550 5.1.1 unknown", "DATA": "354 go on"})
    client = LmtpClient(options(server))
    mail = transaction("a@x.test")

    await client.open()
    await client.send_mail(mail, [MESSAGE])
    assert client.state is State.DATA
    await client.quit()

    assert replies(mail) == ["550 5.1.1 unknown"]
    assert server.commands[-1] == "DATA" and server.data is None


async def test_mail_and_rcpt_parameters_follow_what_the_server_offers(scripted):
    server = await scripted(extensions=("8BITMIME", "SMTPUTF8", "DSN"))
    mail = Transaction("s@isp.test", [RcptTo("jos\u00e9@x.test", "FAILURE", "Jos\u00e9@X.test"),
                                      RcptTo("bob@x.test", "NEVER"), RcptTo("carol@x.test")])

    await session(SmtpClient(options(server)), mail)

    assert server.commands[1:5] == ["MAIL FROM:<s@isp.test> BODY=8BITMIME SMTPUTF8",
                                    "RCPT TO:<jos\u00e9@x.test> NOTIFY=FAILURE ORCPT=rfc822;Jos+C3+A9@X.test",
                                    "RCPT TO:<bob@x.test> NOTIFY=NEVER",
                                    "RCPT TO:<carol@x.test>"]


async def test_without_dsn_offered_no_rcpt_parameters(scripted):
    server = await scripted(extensions=("SMTPUTF8",))
    mail = Transaction("s@isp.test", [RcptTo("bob@x.test", "FAILURE", "bob@x.test")])

    await session(SmtpClient(options(server)), mail)

    # all-ASCII addresses: no SMTPUTF8 either
    assert server.commands[1:3] == ["MAIL FROM:<s@isp.test>", "RCPT TO:<bob@x.test>"]


async def test_an_address_that_would_break_a_command_is_never_written(scripted):
    server = await scripted()
    client = SmtpClient(options(server))
    await client.open()
    try:
        with pytest.raises(ValueError, match="cannot be written in RCPT TO"):
            await client.send_mail(transaction("a@x.test>\r\nRCPT TO:<root@x.test"), [MESSAGE])
    finally:
        await client.quit()
    assert not any(c.startswith(("MAIL", "RCPT")) for c in server.commands)


# --- the hello, STARTTLS and AUTH ---------------------------------------------------


async def test_helo_for_a_server_that_does_not_know_ehlo(scripted):
    server = await scripted(replies={"EHLO": "502 5.5.1 EHLO not implemented"})
    mail = transaction("a@x.test")

    await session(SmtpClient(options(server)), mail)

    assert server.commands[:3] == ["EHLO rpop.test", "HELO rpop.test", "MAIL FROM:<s@isp.test>"]
    assert replies(mail) == ["250 2.0.0 queued"]


async def test_no_helo_when_auth_needs_ehlo(scripted):
    server = await scripted(replies={"EHLO": "502 5.5.1 EHLO not implemented"})
    client = SmtpClient(options(server, username="u", password="pw"))

    with pytest.raises(SessionBroken, match="refused the greeting: 502 5.5.1"):
        await session(client, transaction("a@x.test"))
    assert server.commands == ["EHLO rpop.test"]


async def test_starttls_not_offered_sends_nothing_in_clear_text(scripted):
    server = await scripted()
    client = SmtpClient(options(server, tls_context=ssl.create_default_context(), username="u", password="pw"))

    with pytest.raises(SessionBroken, match="does not offer STARTTLS"):
        await session(client, transaction("a@x.test"))
    assert server.commands == ["EHLO rpop.test"]


async def test_auth_plain(scripted):
    server = await scripted(extensions=("AUTH LOGIN PLAIN",), replies={"AUTH": "235 2.7.0 ok"})

    await session(SmtpClient(options(server, username="u", password="pw")), transaction("a@x.test"))

    assert server.commands[1] == "AUTH PLAIN AHUAcHc="


async def test_auth_login_when_plain_is_not_offered(scripted):
    # the scripted server keys its replies by the upper-cased first word: base64 of "u", then of "pw"
    server = await scripted(extensions=("AUTH LOGIN",),
                            replies={"AUTH": "334 VXNlcm5hbWU6", "DQ==": "334 UGFzc3dvcmQ6", "CHC=": "235 2.7.0 ok"})

    await session(SmtpClient(options(server, username="u", password="pw")), transaction("a@x.test"))

    assert server.commands[1:4] == ["AUTH LOGIN", "dQ==", "cHc="]


@pytest.mark.parametrize("offered, complaint", [
    (("AUTH PLAIN",), "refused the credentials of 'u': 535 5.7.8 no"),
    (("8BITMIME",), "offers no AUTH at all; username is set"),
    (("AUTH CRAM-MD5",), "offers CRAM-MD5; username is set"),
])
async def test_auth_that_fails_breaks_the_session_without_showing_the_password(scripted, offered, complaint):
    server = await scripted(extensions=offered, replies={"AUTH": "535 5.7.8 no"})

    with pytest.raises(SessionBroken) as caught:
        await session(SmtpClient(options(server, username="u", password="s3cret")), transaction("a@x.test"))

    assert str(caught.value).startswith(complaint) and "s3cret" not in str(caught.value)
    assert not any(c.startswith("MAIL") for c in server.commands)


# --- a misbehaving server ---------------------------------------------------------


async def test_a_silent_server_times_out(scripted):
    server = await scripted(greeting=None)

    with pytest.raises(TimeoutError):
        await session(SmtpClient(options(server, timeout=0.2)), transaction("a@x.test"))


@pytest.mark.parametrize("kind, greeting, complaint", [
    (ScriptedSmtp, b"hello there\r\n", "not an SMTP reply"),
    (ScriptedLmtp, b"hello there\r\n", "not an LMTP reply"),
    (ScriptedSmtp, b"554 5.3.2 go away\r\n", "greeted with 554 5.3.2 go away"),
])
async def test_a_bad_greeting_breaks_the_session(scripted, kind, greeting, complaint):
    server = await scripted(kind, greeting=greeting)
    client = (LmtpClient if kind is ScriptedLmtp else SmtpClient)(options(server))

    with pytest.raises(SessionBroken, match=complaint):
        await session(client, transaction("a@x.test"))


async def test_a_reply_line_too_long_breaks_the_session(scripted):
    server = await scripted(replies={"MAIL": "250 " + "x" * 70000})

    with pytest.raises(SessionBroken, match="a reply line longer than 65536 bytes"):
        await session(SmtpClient(options(server)), transaction("a@x.test"))


async def test_a_connection_lost_between_lmtp_replies_keeps_what_was_decided(scripted):
    server = await scripted(ScriptedLmtp, after_data=["250 2.0.0 alice saved"], hang_up=True)
    mail = transaction("alice@x.test", "bob@x.test")

    with pytest.raises(SessionBroken, match="the server closed the connection"):
        await session(LmtpClient(options(server)), mail)

    assert replies(mail) == ["250 2.0.0 alice saved", None]


async def test_commands_out_of_order_are_the_callers_mistake(scripted):
    server = await scripted()
    client = SmtpClient(options(server))

    with pytest.raises(RuntimeError, match="not allowed in state disconnected"):
        await client.send_mail(transaction("a@x.test"), [MESSAGE])
    await client.open()
    with pytest.raises(RuntimeError, match="not allowed in state ready"):
        await client.connect()
    await client.quit()
    assert client.state is State.CLOSED
