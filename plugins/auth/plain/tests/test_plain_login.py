"""SASL PLAIN against the project's scriptable POP3 server: where the
credentials go (on the AUTH line, or after the empty challenge when the line
would be too long), and what a refusal means.

Each test: given a server that offers PLAIN and this record, when we poll,
then this is what crossed the wire and this is what arrived.
"""

from __future__ import annotations

import base64

import attrs

from rpopcore.testing import Message, PlainSasl, delivered, open_site, remote
from rpopcore.testing import poll_one as poll

CAPA = ["TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN"]


def msg(uid: str) -> Message:
    return Message(uid=uid, data=f"From: sender@isp.test\r\nSubject: plain {uid}\r\n\r\nbody {uid}\r\n".encode())


@attrs.define
class RecordingPlain:
    """PlainSasl that also keeps what the client sent at each step: ``None``
    for "no initial response", else the decoded response."""

    user: str
    password: str
    steps: list = attrs.Factory(list)

    def start(self):
        inner = PlainSasl(self.user, self.password).start()
        steps = self.steps

        class Exchange:
            def step(self, client_response):
                steps.append(client_response)
                return inner.step(client_response)

        return Exchange()



def auth_line_octets(user: str, password: str) -> int:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return len(f"AUTH PLAIN {token}\r\n")


async def test_a_short_login_goes_on_the_auth_line_as_initial_response(pop3_server, tmp_path):
    handler = RecordingPlain("user", "short-secret")
    # USER/PASS would be refused: only PLAIN knows this password.
    server = await pop3_server([msg("a")], password="not-this", capabilities=CAPA, sasl={"PLAIN": handler})
    site = await open_site(tmp_path, remote(server.host, server.port, password="short-secret", auth="plain"))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (1, 1, None)
    (session,) = server.sessions
    expected = base64.b64encode(b"\0user\0short-secret").decode()
    assert session.commands[:2] == ["CAPA", f"AUTH PLAIN {expected}"]
    assert handler.steps == [b"\0user\0short-secret"]
    assert len(delivered(tmp_path)) == 1
    await site.close()


async def test_a_login_longer_than_255_octets_waits_for_the_empty_challenge(pop3_server, tmp_path):
    password = "p" * 200  # base64 makes the AUTH line longer than RFC 2449 allows
    assert auth_line_octets("user", password) > 255
    handler = RecordingPlain("user", password)
    server = await pop3_server([msg("a")], password="not-this", capabilities=CAPA, sasl={"PLAIN": handler})
    site = await open_site(tmp_path, remote(server.host, server.port, password=password, auth="plain"))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (1, 1, None)
    (session,) = server.sessions
    # The session log lists commands only; the credentials went as the
    # continuation line, which the handler saw as its second step.
    assert session.commands[:3] == ["CAPA", "AUTH PLAIN", "STAT"]
    assert handler.steps == [None, b"\0user\0" + password.encode()]
    await site.close()


async def test_the_longest_auth_line_that_fits_carries_the_initial_response(pop3_server, tmp_path):
    # "AUTH PLAIN " and CRLF take 13 octets and base64 grows 4 at a time, so
    # 253 octets is the longest line that fits in 255; the next is 257.
    fits = max((p for p in ("x" * n for n in range(150, 200)) if auth_line_octets("user", p) <= 255), key=len)
    assert auth_line_octets("user", fits) == 253
    handler = RecordingPlain("user", fits)
    server = await pop3_server([msg("a")], capabilities=CAPA, sasl={"PLAIN": handler})
    site = await open_site(tmp_path, remote(server.host, server.port, password=fits, auth="plain"))
    assert (await poll(site)).error is None
    assert handler.steps == [b"\0user\0" + fits.encode()]

    longer = fits + "x"
    assert auth_line_octets("user", longer) == 257
    handler.password, handler.steps = longer, []
    site2 = await open_site(tmp_path / "longer", remote(server.host, server.port, password=longer, auth="plain"))
    assert (await poll(site2)).error is None
    assert handler.steps == [None, b"\0user\0" + longer.encode()]
    await site.close()
    await site2.close()


async def test_a_wrong_password_is_auth_failed_and_nothing_else_is_tried(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], capabilities=CAPA, sasl={"PLAIN": PlainSasl("user", "right")})
    site = await open_site(tmp_path, remote(server.host, server.port, password="wrong"))
    result = await poll(site)
    assert result.error == "auth-failed"
    (session,) = server.sessions
    assert [c.split()[0] for c in session.commands] == ["CAPA", "AUTH"]
    assert delivered(tmp_path) == []
    assert server.uids() == ["a"]
    await site.close()


async def test_a_long_login_refused_without_auth_code_before_the_challenge_falls_back(pop3_server, tmp_path):
    # CAPA lists PLAIN but the server has no such handler: "AUTH PLAIN" is
    # answered "-ERR unsupported mechanism" before any credentials went out,
    # so auto selection passes on to USER/PASS.
    password = "q" * 200
    server = await pop3_server([msg("a")], password=password, capabilities=CAPA)
    site = await open_site(tmp_path, remote(server.host, server.port, password=password))
    result = await poll(site)
    assert (result.delivered, result.error) == (1, None)
    (session,) = server.sessions
    assert session.commands[:4] == ["CAPA", "AUTH PLAIN", "USER user", f"PASS {password}"]
    await site.close()


async def test_plain_named_by_the_record_but_not_offered_is_auth_unavailable(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], capabilities=["UIDL", "USER"])
    site = await open_site(tmp_path, remote(server.host, server.port, auth="plain"))
    result = await poll(site)
    assert result.error == "auth-unavailable"
    assert [c for c in server.sessions[0].commands if c.startswith(("AUTH", "USER", "PASS"))] == []
    await site.close()
