"""CRAM-MD5 against the project's scriptable POP3 server: what a refusal
means for ``auto`` selection.

A server that refuses ``AUTH CRAM-MD5`` itself, before any credentials went
out and without the [AUTH] response code, cannot do CRAM-MD5: the next
mechanism is tried.  A refusal after the answer to the challenge, or one
marked [AUTH], is about the credentials: the poll ends with auth-failed and
the password is not offered to the server again some other way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import attrs

from rpopcore.testing import Message, PlainSasl, delivered, open_site, remote
from rpopcore.testing import poll_one as poll

CAPA = ["TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "SASL CRAM-MD5 PLAIN"]


@attrs.frozen
class CramMd5Sasl:
    """The server side of CRAM-MD5 (RFC 2195) for one user."""

    user: str
    password: str

    def start(self):
        return _CramExchange(self)


@attrs.define
class _CramExchange:
    handler: CramMd5Sasl
    challenge: bytes = b""

    def step(self, client_response):
        if not self.challenge:
            self.challenge = f"<{secrets.randbelow(10**9)}.{secrets.randbelow(10**9)}@scriptable.test>".encode()
            return ("challenge", self.challenge)
        name, _, digest = client_response.decode().rpartition(" ")
        expected = hmac.new(self.handler.password.encode(), self.challenge, hashlib.md5).hexdigest()
        if name == self.handler.user and hmac.compare_digest(digest, expected):
            return ("ok", None)
        return ("fail", b"invalid user name or password")


@attrs.frozen
class RefusingSasl:
    """A mechanism the server lists but refuses at once, with [AUTH] (the
    scriptable server marks every SASL failure so)."""

    def start(self):
        return self

    def step(self, client_response):
        return ("fail", b"not for you")


@attrs.frozen
class EmptyChallengeSasl:
    def start(self):
        return self

    def step(self, client_response):
        return ("challenge", b"")


def msg(uid: str) -> Message:
    return Message(uid=uid, data=f"From: sender@isp.test\r\nSubject: cram {uid}\r\n\r\nbody {uid}\r\n".encode())



def logins(session) -> list[str]:
    return [c.split(" ")[0] + (" " + c.split(" ")[1] if c.startswith("AUTH") else "")
            for c in session.commands if c.startswith(("AUTH", "USER", "PASS", "APOP"))]


async def test_cram_md5_logs_in_and_the_password_never_crosses_the_wire(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], password="not-this", capabilities=CAPA,
                               sasl={"CRAM-MD5": CramMd5Sasl("user", "pass")})
    site = await open_site(tmp_path, remote(server.host, server.port, password="pass"))
    result = await poll(site)
    assert (result.delivered, result.error) == (1, None)
    (session,) = server.sessions
    assert logins(session) == ["AUTH CRAM-MD5"]
    assert session.authenticated
    await site.close()


async def test_a_server_that_refuses_the_mechanism_itself_gets_the_next_one(pop3_server, tmp_path):
    # CAPA lists CRAM-MD5, but "AUTH CRAM-MD5" is answered "-ERR unsupported
    # mechanism": auto selection moves on to PLAIN.
    server = await pop3_server([msg("a")], capabilities=CAPA, sasl={"PLAIN": PlainSasl("user", "pass")})
    site = await open_site(tmp_path, remote(server.host, server.port, password="pass"))
    result = await poll(site)
    assert (result.delivered, result.error) == (1, None)
    (session,) = server.sessions
    assert logins(session) == ["AUTH CRAM-MD5", "AUTH PLAIN"]
    assert len(delivered(tmp_path)) == 1
    await site.close()


async def test_cram_md5_named_by_the_record_and_refused_is_auth_unavailable(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], capabilities=CAPA, sasl={"PLAIN": PlainSasl("user", "pass")})
    site = await open_site(tmp_path, remote(server.host, server.port, password="pass", auth="cram-md5"))
    result = await poll(site)
    assert result.error == "auth-unavailable"
    assert logins(server.sessions[0]) == ["AUTH CRAM-MD5"]
    await site.close()


async def test_a_wrong_password_is_auth_failed_and_no_other_mechanism_is_tried(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], capabilities=CAPA,
                               sasl={"CRAM-MD5": CramMd5Sasl("user", "pass"), "PLAIN": PlainSasl("user", "pass")})
    site = await open_site(tmp_path, remote(server.host, server.port, password="wrong"))
    result = await poll(site)
    assert result.error == "auth-failed"
    assert logins(server.sessions[0]) == ["AUTH CRAM-MD5"]
    assert delivered(tmp_path) == [] and server.uids() == ["a"]
    await site.close()


async def test_a_refusal_of_the_mechanism_before_any_credential_falls_back_even_marked_auth(pop3_server, tmp_path):
    # Dovecot answers a mechanism it does not offer with "-ERR [AUTH]
    # Unsupported authentication mechanism": before any credential was sent,
    # a refusal can only be about the mechanism, so the next one is tried.
    server = await pop3_server([msg("a")], capabilities=CAPA,
                               sasl={"CRAM-MD5": RefusingSasl(), "PLAIN": PlainSasl("user", "pass")})
    site = await open_site(tmp_path, remote(server.host, server.port, password="pass"))
    result = await poll(site)
    assert (result.error, result.delivered) == (None, 1)
    assert logins(server.sessions[0]) == ["AUTH CRAM-MD5", "AUTH PLAIN"]
    await site.close()


async def test_an_empty_challenge_is_a_protocol_error(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], capabilities=CAPA,
                               sasl={"CRAM-MD5": EmptyChallengeSasl(), "PLAIN": PlainSasl("user", "pass")})
    site = await open_site(tmp_path, remote(server.host, server.port, password="pass"))
    result = await poll(site)
    assert result.error == "protocol-error"
    assert "empty challenge" in result.detail
    assert logins(server.sessions[0]) == ["AUTH CRAM-MD5"]
    await site.close()
