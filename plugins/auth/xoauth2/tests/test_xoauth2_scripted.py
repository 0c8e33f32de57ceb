"""XOAUTH2 against the scriptable POP3 server, whose SASL handler here
answers as Gmail and Microsoft 365 do: the exact client response, the
RFC 5034 255-octet rule for the initial response, a 5 KB token in the
two-step form, the ``+ <base64 JSON>`` error challenge, the retry with a new
token, and when the mechanism is (not) offered."""

from __future__ import annotations

import base64
import json
import socket

import attrs
import pytest

from rpopcore.api import ConfigError
from rpopcore.testing import Message, open_site, remote
from rpopcore.testing import poll_one as poll
from rpop_oauth2.testing import OAuth2Provider

ERROR_STATUS = {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}


def msg(uid: str) -> Message:
    return Message(uid, f"From: a@isp.test\nSubject: {uid}\n\nbody\n".encode())


@attrs.define
class XOAuth2Handler:
    """The server side of XOAUTH2: the token is checked with the provider; a
    refused one gets the JSON status as a challenge, whose answer must be an
    empty response.  ``responses`` holds every decoded client response (None:
    no initial response); ``refuse_all`` refuses even good tokens."""

    provider: OAuth2Provider
    user: str = "alice"
    refuse_all: bool = False
    responses: list = attrs.Factory(list)

    def start(self):
        return _XOAuth2Exchange(self)


@attrs.define
class _XOAuth2Exchange:
    handler: XOAuth2Handler
    refused: bool = False

    def step(self, response):
        self.handler.responses.append(response)
        if self.refused:
            return ("fail", b"Invalid credentials") if response == b"" else ("fail", b"expected an empty response")
        if response is None:
            return ("challenge", b"")  # the two-step form: "+ ", then the payload
        fields = dict(f.split("=", 1) for f in response.decode().split("\x01") if "=" in f)
        token = fields.get("auth", "").removeprefix("Bearer ")
        if not self.handler.refuse_all and fields.get("user") == self.handler.user and self.handler.provider.user_of(token) == self.handler.user:
            return ("ok", None)
        self.refused = True
        return ("challenge", json.dumps(ERROR_STATUS).encode())


def expected_response(token: str, user: str = "alice") -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


async def start(pop3_server, oauth2_provider, *, messages=(), capabilities=None, **provider_options):
    provider = oauth2_provider(**provider_options)
    handler = XOAuth2Handler(provider)
    server = await pop3_server(list(messages), sasl={"XOAUTH2": handler}, capabilities=capabilities, max_line=65536)
    return provider, handler, server


def record(server, provider, refresh_token, **keys) -> str:
    values = {"account": "alice", "auth": "xoauth2", **keys}
    return remote(server.host, server.port, **values) + provider.record_table(refresh_token)



def auth_commands(server) -> list[str]:
    return [c for c in server.sessions[-1].commands if c.upper().startswith("AUTH")]


async def test_a_5kb_token_is_sent_in_the_two_step_form_whole(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server = await start(pop3_server, oauth2_provider, messages=[msg("a")], token_size=5 * 1024)
    refresh_token = provider.add_account("alice")
    site = await open_site(tmp_path, record(server, provider, refresh_token))
    result = await poll(site)
    assert (result.delivered, result.error) == (1, None)
    (token,) = provider.issued
    assert len(token) == 5120
    assert auth_commands(server) == ["AUTH XOAUTH2"]
    assert handler.responses == [None, expected_response(token)]
    await site.close()


@pytest.mark.parametrize("token_size, initial", [(155, True), (156, False)])
async def test_the_initial_response_is_sent_only_when_the_auth_line_fits_255_octets(
    pop3_server, oauth2_provider, tmp_path, token_size, initial
):
    provider, handler, server = await start(pop3_server, oauth2_provider, token_size=token_size)
    site = await open_site(tmp_path, record(server, provider, provider.add_account("alice")))
    assert (await poll(site)).error is None
    (token,) = provider.issued
    line = "AUTH XOAUTH2 " + base64.b64encode(expected_response(token)).decode()
    if initial:
        assert len(line) + 2 == 255  # CRLF included: exactly the limit
        assert auth_commands(server) == [line]
        assert handler.responses == [expected_response(token)]
    else:
        assert len(line) + 2 > 255
        assert auth_commands(server) == ["AUTH XOAUTH2"]
        assert handler.responses == [None, expected_response(token)]
    await site.close()


async def test_the_error_challenge_is_answered_with_an_empty_line_and_the_poll_is_auth_failed(
    pop3_server, oauth2_provider, tmp_path
):
    provider, handler, server = await start(pop3_server, oauth2_provider, messages=[msg("a")])
    handler.refuse_all = True
    site = await open_site(tmp_path, record(server, provider, provider.add_account("alice")))
    result = await poll(site)
    assert result.error == "auth-failed"
    assert '(the server\'s SASL error: {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"})' in result.detail
    (token,) = provider.issued
    assert handler.responses == [expected_response(token), b""]
    # A token fetched for this very login is not retried.
    assert len(auth_commands(server)) == 1 and len(provider.grants) == 1
    assert server.uids() == ["a"]
    await site.close()


async def test_a_refused_cached_token_is_replaced_once_in_a_new_auth(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server = await start(pop3_server, oauth2_provider, messages=[msg("a")])
    site = await open_site(tmp_path, record(server, provider, provider.add_account("alice")))
    assert (await poll(site)).error is None

    provider.expire_access_tokens()
    server.add(msg("b"))
    result = await poll(site)
    assert (result.delivered, result.error) == (1, None)
    first, second = provider.issued
    assert auth_commands(server) == [
        "AUTH XOAUTH2 " + base64.b64encode(expected_response(first)).decode(),
        "AUTH XOAUTH2 " + base64.b64encode(expected_response(second)).decode(),
    ]

    # A server that refuses the new token too: one retry only.
    handler.refuse_all = True
    result = await poll(site)
    assert result.error == "auth-failed"
    assert len(auth_commands(server)) == 2 and len(provider.grants) == 3
    await site.close()


async def test_xoauth2_is_offered_only_with_an_oauth2_table_and_when_the_server_lists_it(
    pop3_server, oauth2_provider, tmp_path
):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    without_sasl = ["TOP", "UIDL", "USER", "RESP-CODES"]
    offering = await pop3_server([msg("a")], sasl={"XOAUTH2": XOAuth2Handler(provider)})
    # Another mailbox on the same host (one mailbox is one record): user bob.
    not_offering = await pop3_server([msg("b")], sasl={"XOAUTH2": XOAuth2Handler(provider)}, capabilities=without_sasl,
                                     user="bob")
    declaration = (
        # no oauth2 table: USER/PASS although the server offers XOAUTH2
        remote(offering.host, offering.port)
        # an oauth2 table, but the server does not list XOAUTH2: USER/PASS
        + record(not_offering, provider, refresh_token, auth="auto", account="bob", owner="bob@example.test")
    )
    site = await open_site(tmp_path, declaration)
    results = await site.poll_once()
    assert [r.error for r in results] == [None, None]
    assert offering.sessions[-1].commands[1:3] == ["USER user", "PASS pass"]
    assert not_offering.sessions[-1].commands[1:3] == ["USER bob", "PASS pass"]
    assert provider.grants == []
    await site.close()


async def test_auth_xoauth2_named_without_an_oauth2_table_is_auth_unavailable(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server = await start(pop3_server, oauth2_provider)
    site = await open_site(tmp_path, remote(server.host, server.port, account="alice", auth="xoauth2"))
    result = await poll(site)
    assert result.error == "auth-unavailable"
    assert auth_commands(server) == []
    await site.close()


async def test_an_unreachable_token_endpoint_is_server_temporary_and_nothing_is_sent(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server = await start(pop3_server, oauth2_provider, messages=[msg("a")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/token"
    declaration = remote(server.host, server.port, account="alice", auth="xoauth2") + provider.record_table(
        "rt-any", token_endpoint=closed
    )
    site = await open_site(tmp_path, declaration)
    result = await poll(site)
    assert result.error == "server-temporary"
    assert "cannot reach the token endpoint" in result.detail
    assert auth_commands(server) == [] and server.uids() == ["a"]
    await site.close()


async def test_a_token_endpoint_without_tls_elsewhere_than_loopback_is_refused(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server = await start(pop3_server, oauth2_provider)
    declaration = remote(server.host, server.port, account="alice", auth="xoauth2") + provider.record_table(
        "rt-any", token_endpoint="http://oauth2.example.org/token"
    )
    with pytest.raises(ConfigError, match="key 'oauth2'.*is not an https:// URL"):
        await open_site(tmp_path, declaration)
    assert server.sessions_total == 0


@attrs.define
class EndlessChallenges:
    """A broken server that answers every response with another challenge."""

    responses: list = attrs.Factory(list)

    def start(self):
        return self

    def step(self, response):
        self.responses.append(response)
        return ("challenge", b'{"status":"401"}')


async def test_a_server_that_keeps_challenging_is_cancelled_not_answered_forever(pop3_server, oauth2_provider, tmp_path):
    provider = oauth2_provider()
    handler = EndlessChallenges()
    server = await pop3_server([msg("a")], sasl={"XOAUTH2": handler})
    site = await open_site(tmp_path, record(server, provider, provider.add_account("alice")))
    result = await poll(site)
    assert result.error == "auth-failed"
    assert "-ERR authentication cancelled" in result.detail
    # payload, empty answer to the error, then "*" (RFC 5034 cancel)
    assert len(handler.responses) == 2 and handler.responses[1] == b""
    await site.close()
