"""AUTH MSN (NTLM) end to end: the project's scriptable POP3 server plays a
historic MSN/Hotmail server, with pyspnego's NTLM acceptor checking the
password.

The acceptor reads its users from the file the ``NTLM_USER_FILE``
environment variable names (``DOMAIN:USER:PASSWORD`` lines; an empty domain
for a user@domain name).  The server's own USER/PASS password is a different
one, so a delivery proves NTLM did the login.
"""

from __future__ import annotations

import attrs
import pytest
import spnego
import spnego.exceptions

from rpopcore.testing import Message, delivered, open_site, remote
from rpopcore.testing import poll_one as poll

ACCOUNT = "alice@hotmail.com"
PASSWORD = "hotmail-secret"
MSN_SERVER = "pop3.email.msn.com"
#: A historic server: no SASL line in CAPA.
CAPA = ["TOP", "UIDL", "USER"]

NEGOTIATE, CHALLENGE, AUTHENTICATE = 1, 2, 3


@attrs.define
class NtlmSasl:
    """The server side of AUTH MSN.  ``challenge_first``: put the NTLM
    CHALLENGE in the first "+" instead of waiting for the client's NEGOTIATE
    (it is made from the NEGOTIATE a pyspnego client would send)."""

    challenge_first: bool = False
    #: The NTLM message types received from clients, in order.
    received: list[int] = attrs.Factory(list)
    #: Who logged in.
    principals: list[str] = attrs.Factory(list)

    def start(self):
        return _NtlmExchange(self, spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm))


@attrs.define
class _NtlmExchange:
    handler: NtlmSasl
    acceptor: object

    def step(self, client_response):
        if client_response is None:
            if not self.handler.challenge_first:
                return ("challenge", b"")  # the empty "+": send NEGOTIATE
            stand_in = spnego.client("x", "y", protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
            return ("challenge", self.acceptor.step(stand_in.step(None)))
        if client_response.startswith(b"NTLMSSP\0"):
            self.handler.received.append(client_response[8])
        try:
            out = self.acceptor.step(client_response)
        except spnego.exceptions.SpnegoError:
            return ("fail", b"NTLM authentication failed")
        if self.acceptor.complete:
            self.handler.principals.append(self.acceptor.client_principal)
            return ("ok", None)
        return ("challenge", out)


@pytest.fixture
def ntlm_users(tmp_path, monkeypatch):
    """The acceptor's user file, holding alice@hotmail.com."""
    path = tmp_path / "ntlm-users"
    path.write_text(f":{ACCOUNT}:{PASSWORD}\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(path))
    return path


def msg(uid: str) -> Message:
    return Message(uid=uid, data=f"From: sender@isp.test\r\nSubject: msn {uid}\r\n\r\nbody {uid}\r\n".encode())


def logins(session) -> list[str]:
    return [c if c.startswith("AUTH") else c.split(" ")[0]
            for c in session.commands if c.startswith(("AUTH", "USER", "PASS", "APOP"))]



async def msn_server(pop3_server, handler: NtlmSasl | None = None, **kwargs):
    sasl = {"MSN": handler} if handler is not None else {}
    kwargs.setdefault("password", "not-the-ntlm-password")
    return await pop3_server([msg("a"), msg("b")], user=ACCOUNT, capabilities=CAPA, sasl=sasl, **kwargs)


async def test_auto_on_an_msn_server_logs_in_with_ntlm_and_delivers(pop3_server, ntlm_users, tmp_path):
    handler = NtlmSasl()
    server = await msn_server(pop3_server, handler)
    site = await open_site(tmp_path, remote(server.host, server.port, account=ACCOUNT, password=PASSWORD,
                                            server_name=MSN_SERVER))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (2, 2, None)
    (session,) = server.sessions
    assert logins(session) == ["AUTH MSN"]
    assert handler.received == [NEGOTIATE, AUTHENTICATE]
    assert handler.principals == [ACCOUNT]
    assert sorted(m.split(b"Subject: ")[1].split(b"\n")[0] for m in delivered(tmp_path)) == [b"msn a", b"msn b"]
    await site.close()


async def test_a_wrong_password_is_auth_failed_and_not_retried_in_clear(pop3_server, ntlm_users, tmp_path):
    handler = NtlmSasl()
    server = await msn_server(pop3_server, handler, password="wrong")
    site = await open_site(tmp_path, remote(server.host, server.port, account=ACCOUNT, password="wrong",
                                            server_name=MSN_SERVER))
    result = await poll(site)
    assert result.error == "auth-failed"
    assert logins(server.sessions[0]) == ["AUTH MSN"]
    assert handler.received == [NEGOTIATE, AUTHENTICATE] and handler.principals == []
    assert delivered(tmp_path) == [] and server.uids() == ["a", "b"]
    await site.close()


async def test_auth_msn_named_by_the_record_is_used_for_any_host(pop3_server, ntlm_users, tmp_path):
    handler = NtlmSasl()
    server = await msn_server(pop3_server, handler)
    site = await open_site(tmp_path, remote(server.host, server.port, account=ACCOUNT, password=PASSWORD,
                                            auth="msn"))
    result = await poll(site)
    assert (result.delivered, result.error) == (2, None)
    assert logins(server.sessions[0]) == ["AUTH MSN"]
    assert handler.principals == [ACCOUNT]
    await site.close()


async def test_without_an_msn_name_auto_does_not_try_msn(pop3_server, ntlm_users, tmp_path):
    handler = NtlmSasl()
    server = await msn_server(pop3_server, handler, password=PASSWORD)
    site = await open_site(tmp_path, remote(server.host, server.port, account=ACCOUNT, password=PASSWORD,
                                            server_name="pop.example.net"))
    assert (await poll(site)).error is None
    assert logins(server.sessions[0]) == ["USER", "PASS"]
    assert handler.received == []
    await site.close()


async def test_a_server_that_refuses_auth_msn_gets_the_next_mechanism(pop3_server, ntlm_users, tmp_path):
    # "AUTH MSN" answered "-ERR unsupported mechanism" (no [AUTH] code)
    # before any credentials: the mechanism cannot be used, USER/PASS can.
    server = await msn_server(pop3_server, None, password=PASSWORD)
    site = await open_site(tmp_path, remote(server.host, server.port, account=ACCOUNT, password=PASSWORD,
                                            server_name=MSN_SERVER))
    result = await poll(site)
    assert (result.delivered, result.error) == (2, None)
    assert logins(server.sessions[0]) == ["AUTH MSN", "USER", "PASS"]
    await site.close()


async def test_a_server_that_sends_its_challenge_at_once_is_answered(pop3_server, ntlm_users, tmp_path):
    handler = NtlmSasl(challenge_first=True)
    server = await msn_server(pop3_server, handler)
    site = await open_site(tmp_path, remote(server.host, server.port, account=ACCOUNT, password=PASSWORD,
                                            server_name=MSN_SERVER))
    result = await poll(site)
    assert (result.delivered, result.error) == (2, None)
    assert handler.received == [AUTHENTICATE]
    assert handler.principals == [ACCOUNT]
    await site.close()
