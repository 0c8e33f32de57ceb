"""The LMTP agent against a scripted server (what Dovecot will not do on
demand: no PIPELINING, a refused sender, a connection that drops between
the per-recipient replies, silence), and the site-file options.  The DATA
encoding is tested with the client, in tests/smtp."""

from __future__ import annotations

from pathlib import Path

import pytest
from rpop_delivery_lmtp import LmtpAgent, make_agent

from rpopcore.api import ConfigError, Envelope, MessageSpool, Outcome, Recipient, RetrievedMessage
from rpopcore.testing import ScriptedLmtp, plugin_manager


def retrieved(data: bytes) -> RetrievedMessage:
    spool = MessageSpool()
    spool.write(data)
    spool.finish()
    return RetrievedMessage("uid1", 1, spool)


def envelope(sender: str, *addresses: str) -> Envelope:
    return Envelope(sender=sender, recipients=tuple(Recipient(a, report_failure=True, original=a) for a in addresses))


@pytest.fixture
async def scripted():
    servers = []

    async def start(path=None, **kwargs) -> ScriptedLmtp:
        server = await ScriptedLmtp(**kwargs).start(path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def deliver(agent, env, data=b"Subject: hi\n\nbody\n"):
    message = retrieved(data)
    try:
        return await agent.deliver(message, env, env.recipients)
    finally:
        message.close()


def outcomes_of(results):
    return [(o.recipient.address, o.outcome) for o in results]


# --- conversations ----------------------------------------------------------


@pytest.mark.parametrize("extensions", [("PIPELINING",), ("8BITMIME",)], ids=["pipelined", "one by one"])
async def test_each_recipient_gets_its_own_reply(scripted, extensions):
    server = await scripted(extensions=extensions, replies={"RCPT bob@example.test": "550 5.1.1 no such user"},
                            after_data=["250 2.0.0 alice saved", "452 4.2.2 carol over quota"])
    agent = LmtpAgent(host="127.0.0.1", port=server.port, timeout=5)
    env = envelope("s@isp.test", "alice@example.test", "bob@example.test", "carol@example.test")

    results = await deliver(agent, env)

    assert outcomes_of(results) == [("alice@example.test", Outcome.DELIVERED),
                                    ("bob@example.test", Outcome.PERMANENT),
                                    ("carol@example.test", Outcome.TEMPORARY)]
    assert "alice saved" in results[0].detail and "no such user" in results[1].detail
    assert server.commands[1] == "MAIL FROM:<s@isp.test>" + (" BODY=8BITMIME" if "8BITMIME" in extensions else "")
    assert server.commands[-1] == "QUIT"


async def test_a_connection_lost_between_replies_leaves_the_rest_temporary(scripted):
    server = await scripted(after_data=["250 2.0.0 alice saved"], hang_up=True)
    agent = LmtpAgent(host="127.0.0.1", port=server.port, timeout=5)

    results = await deliver(agent, envelope("s@isp.test", "alice@example.test", "bob@example.test"))

    assert outcomes_of(results) == [("alice@example.test", Outcome.DELIVERED), ("bob@example.test", Outcome.TEMPORARY)]
    assert "closed the connection" in results[1].detail


@pytest.mark.parametrize("extensions", [("PIPELINING",), ("8BITMIME",)], ids=["pipelined", "one by one"])
@pytest.mark.parametrize("reply, outcome", [("451 4.3.0 try later", Outcome.TEMPORARY),
                                            ("553 5.1.8 bad sender", Outcome.PERMANENT)])
async def test_a_refused_sender_decides_every_recipient(scripted, extensions, reply, outcome):
    server = await scripted(extensions=extensions, replies={"MAIL": reply, "DATA": "503 5.5.1 need MAIL"})
    agent = LmtpAgent(host="127.0.0.1", port=server.port, timeout=5)

    results = await deliver(agent, envelope("s@isp.test", "alice@example.test", "bob@example.test"))

    assert [o.outcome for o in results] == [outcome, outcome]
    assert all(reply in o.detail for o in results)
    assert server.data is None
    if "PIPELINING" not in extensions:
        assert [c.split()[0] for c in server.commands] == ["LHLO", "MAIL", "QUIT"]


async def test_a_silent_server_times_out_as_temporary(scripted):
    server = await scripted(greeting=None)
    agent = LmtpAgent(host="127.0.0.1", port=server.port, timeout=0.3)

    results = await deliver(agent, envelope("s@isp.test", "alice@example.test"))

    assert outcomes_of(results) == [("alice@example.test", Outcome.TEMPORARY)]
    assert "did not answer within" in results[0].detail


async def test_nonsense_from_the_server_is_temporary(scripted):
    server = await scripted(greeting=b"hello there\r\n")
    agent = LmtpAgent(host="127.0.0.1", port=server.port, timeout=5)

    results = await deliver(agent, envelope("s@isp.test", "alice@example.test"))

    assert outcomes_of(results) == [("alice@example.test", Outcome.TEMPORARY)]
    assert "not an LMTP reply" in results[0].detail


async def test_a_unix_socket_relative_to_the_site_folder(scripted, tmp_path):
    server = await scripted(path=tmp_path / "lmtp.sock")
    agent = make_agent({"socket": "lmtp.sock"}, tmp_path)
    env = Envelope(sender="", recipients=(Recipient("alice@example.test"),), remove_fields={"x-special"})

    results = await deliver(agent, env, b"Return-Path: <old@x>\nX-Special: a\nSubject: hi\n\n.dot\nend")

    assert outcomes_of(results) == [("alice@example.test", Outcome.DELIVERED)]
    assert server.commands[1] == "MAIL FROM:<> BODY=8BITMIME"
    assert server.data == b"Subject: hi\r\n\r\n..dot\r\nend\r\n"


async def test_addresses_that_would_break_a_command_are_refused_unsent(scripted):
    server = await scripted()
    agent = LmtpAgent(host="127.0.0.1", port=server.port, timeout=5)

    results = await deliver(agent, envelope("s@isp.test", "evil@x>\r\nRCPT TO:<root@example.test", "alice@example.test"))
    assert outcomes_of(results)[1] == ("alice@example.test", Outcome.DELIVERED)
    assert results[0].outcome is Outcome.PERMANENT
    assert not any("root@" in c for c in server.commands)

    results = await deliver(agent, envelope("s@isp.test\r\nRSET", "alice@example.test"))
    assert [o.outcome for o in results] == [Outcome.PERMANENT]


# --- options ------------------------------------------------------------------


def test_the_entry_point_registers_lmtp(monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "lmtp")
    assert plugin_manager().hook.rpop_delivery_agents() == [{"lmtp": make_agent}]


def test_options_build_an_agent(tmp_path):
    agent = make_agent({"host": "127.0.0.1"}, tmp_path)
    assert (agent.host, agent.port, agent.path, agent.timeout) == ("127.0.0.1", 24, None, 30)
    agent = make_agent({"socket": "/run/dovecot/lmtp", "timeout": "2m"}, tmp_path)
    assert (agent.path, agent.timeout) == (Path("/run/dovecot/lmtp"), 120)


@pytest.mark.parametrize("options, message", [
    ({}, "[delivery] key 'host' is missing"),
    ({"host": "h", "socket": "s"}, "[delivery] key 'socket': give either host"),
    ({"socket": "s", "port": 24}, "[delivery] key 'port': a port needs a host"),
    ({"host": "h", "port": 0}, "[delivery] key 'port': expected a port number"),
    ({"host": "h", "port": "24"}, "[delivery] key 'port': expected a whole number"),
    ({"host": "h", "timeout": "0s"}, "[delivery] key 'timeout': must be at least 1s"),
    ({"host": "h", "timeout": "soon"}, "[delivery] key 'timeout': 'soon' is not a duration"),
    ({"host": "h", "hots": "x"}, "[delivery]: unknown key 'hots'; did you mean 'host'?"),
])
def test_bad_options_are_config_errors(options, message, tmp_path):
    with pytest.raises(ConfigError) as caught:
        make_agent(options, tmp_path)
    assert str(caught.value).startswith(message)
