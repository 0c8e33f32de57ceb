"""OAUTHBEARER (RFC 7628) against the scriptable POP3 server, whose SASL
handler here checks the exact client response: the GS2 header with the
escaped account, host and port, the token; the error challenge answered with
a single %x01; a 5 KB token in the two-step form."""

from __future__ import annotations

import base64
import json

import attrs

from rpopcore.testing import Message, open_site, remote
from rpopcore.testing import poll_one as poll
from rpop_oauth2.testing import OAuth2Provider

ERROR_STATUS = {"status": "invalid_token", "scope": "pop", "openid-configuration": "https://idp.test/.well-known/openid-configuration"}


@attrs.define
class OAuthBearerHandler:
    """The server side of OAUTHBEARER: the token checked with the provider;
    a refused one gets the JSON status challenge, whose answer must be the
    single octet %x01 (RFC 7628 section 3.2.3).  ``responses`` holds every
    decoded client response (None: no initial response)."""

    provider: OAuth2Provider
    user: str = "alice"
    responses: list = attrs.Factory(list)

    def start(self):
        return _Exchange(self)


@attrs.define
class _Exchange:
    handler: OAuthBearerHandler
    refused: bool = False

    def step(self, response):
        self.handler.responses.append(response)
        if self.refused:
            return ("fail", b"invalid token") if response == b"\x01" else ("fail", b"expected %x01")
        if response is None:
            return ("challenge", b"")
        gs2, *fields = response.decode().split("\x01")
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        token = values.get("auth", "").removeprefix("Bearer ")
        if gs2 == f"n,a={self.handler.user}," and self.handler.provider.user_of(token) == "alice":
            return ("ok", None)
        self.refused = True
        return ("challenge", json.dumps(ERROR_STATUS).encode())



def auth_commands(server) -> list[str]:
    return [c for c in server.sessions[-1].commands if c.upper().startswith("AUTH")]


async def setup(pop3_server, oauth2_provider, tmp_path, *, account="alice", server_name="", token_size=0):
    provider = oauth2_provider(token_size=token_size)
    handler = OAuthBearerHandler(provider, user=account.replace("=", "=3D").replace(",", "=2C"))
    server = await pop3_server([Message("m1", b"Subject: one\n\nbody\n")], sasl={"OAUTHBEARER": handler}, max_line=65536)
    keys = {"account": account, "auth": "oauthbearer"}
    if server_name:
        keys["server_name"] = server_name
    refresh_token = provider.add_account("alice")
    site = await open_site(tmp_path, remote(server.host, server.port, **keys) + provider.record_table(refresh_token))
    return provider, handler, server, site


async def test_the_client_response_names_the_account_host_and_port(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server, site = await setup(pop3_server, oauth2_provider, tmp_path, server_name="pop.isp.test")
    assert (await poll(site)).error is None
    (token,) = provider.issued
    expected = f"n,a=alice,\x01host=pop.isp.test\x01port={server.port}\x01auth=Bearer {token}\x01\x01".encode()
    assert handler.responses == [expected]
    assert auth_commands(server) == ["AUTH OAUTHBEARER " + base64.b64encode(expected).decode()]
    await site.close()


async def test_commas_and_equal_signs_in_the_account_are_escaped(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server, site = await setup(pop3_server, oauth2_provider, tmp_path, account="al,i=ce")
    assert (await poll(site)).error is None
    assert handler.responses[0].startswith(b"n,a=al=2Ci=3Dce,\x01host=127.0.0.1\x01")
    await site.close()


async def test_the_error_challenge_is_answered_with_x01_and_the_poll_is_auth_failed(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server, site = await setup(pop3_server, oauth2_provider, tmp_path)
    handler.user = "somebody-else"  # every login is refused
    result = await poll(site)
    assert result.error == "auth-failed"
    assert handler.responses[1:] == [b"\x01"]
    assert '"status":"invalid_token"' in result.detail
    assert len(auth_commands(server)) == 1 and len(provider.grants) == 1
    await site.close()


async def test_a_5kb_token_goes_in_the_two_step_form(pop3_server, oauth2_provider, tmp_path):
    provider, handler, server, site = await setup(pop3_server, oauth2_provider, tmp_path, token_size=5 * 1024)
    result = await poll(site)
    assert (result.delivered, result.error) == (1, None)
    (token,) = provider.issued
    assert auth_commands(server) == ["AUTH OAUTHBEARER"]
    assert handler.responses[0] is None and handler.responses[1].endswith(f"auth=Bearer {token}\x01\x01".encode())
    await site.close()
