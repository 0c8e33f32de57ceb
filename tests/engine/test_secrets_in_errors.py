"""No secret in any output, whatever step a server fails at.

For every way rpop sends a secret -- USER/PASS, APOP, SASL PLAIN with the
credentials on the AUTH line and (a long password) on a line of their own,
CRAM-MD5, XOAUTH2 and OAUTHBEARER with a long token -- the scriptable server
drops the connection, or stops answering, at each line rpop sends in turn.
Then the password or token, plain or in base64 (in either case) or as the
line rpop sent, appears nowhere: not in the poll's result, not in the stored
status (what ``status --json`` shows), not in the log at its most verbose
level, not in the state database.
"""

from __future__ import annotations

import asyncio
import base64
import json

import attrs
import pytest

from rpopcore.testing.scriptable_server import Faults, Message, PlainSasl, ScriptableServer
from rpopcore.testing.sites import open_site, remote
from rpopcore.testing.sites import poll_one as poll

ACCOUNT = "alice"
# Long enough that SASL PLAIN cannot go on the AUTH line (RFC 5034's 255 octets).
LONG_PASSWORD = "".join(chr(0x21 + (i * 37) % 94) for i in range(222)).replace('"', "Q").replace("\\", "R")
SHORT_PASSWORD = "Sh0rt-pa55word!"
# A window this long of any secret form must not appear in any output.
WINDOW = 16


@attrs.frozen
class ChallengeThenAccept:
    """A SASL mechanism on the server side that sends one challenge and
    accepts whatever answers it: these tests are about what rpop shows,
    not about the server checking the credentials."""

    challenge: bytes = b""

    def start(self):
        return self

    def step(self, response):
        return ("challenge", self.challenge) if response is None else ("ok", None)


@attrs.frozen
class Way:
    """One way of sending a secret: the server it needs, the record's keys."""

    name: str
    password: str
    server_options: dict
    record_keys: dict
    oauth2: bool = False


WAYS = [
    Way("userpass", SHORT_PASSWORD, {}, {"auth": "userpass"}),
    Way("apop", SHORT_PASSWORD, {"apop": True}, {"auth": "apop"}),
    Way("plain", SHORT_PASSWORD, {"sasl": {"PLAIN": PlainSasl(ACCOUNT, SHORT_PASSWORD)}}, {"auth": "plain"}),
    Way("plain-continued", LONG_PASSWORD, {"sasl": {"PLAIN": PlainSasl(ACCOUNT, LONG_PASSWORD)}}, {"auth": "plain"}),
    Way("cram-md5", LONG_PASSWORD, {"sasl": {"CRAM-MD5": ChallengeThenAccept(b"<1896.697170952@isp.test>")}},
        {"auth": "cram-md5"}),
    Way("xoauth2", SHORT_PASSWORD, {"sasl": {"XOAUTH2": ChallengeThenAccept()}}, {"auth": "xoauth2"}, oauth2=True),
    Way("oauthbearer", SHORT_PASSWORD, {"sasl": {"OAUTHBEARER": ChallengeThenAccept()}}, {"auth": "oauthbearer"},
        oauth2=True),
]


def forms(secret: str) -> set[str]:
    """A secret as it may leak: itself, and in base64 as sent or changed in case."""
    encoded = base64.b64encode(secret.encode()).decode()
    return {secret, encoded, encoded.upper(), encoded.lower()}


def sent_secrets(server: ScriptableServer) -> set[str]:
    """Every secret argument rpop put on the wire, as it went and decoded."""
    found: set[str] = set()
    for session in server.sessions:
        lines = list(session.sasl_responses)
        for command in session.commands:
            verb, _, rest = command.partition(" ")
            if verb in ("PASS", "APOP"):
                lines.append(rest.split()[-1])
            elif verb == "AUTH" and len(rest.split()) == 2:
                lines.append(rest.split()[1])
        for line in lines:
            found |= forms(line)
            try:
                found.add(base64.b64decode(line, validate=True).decode("utf-8", "replace"))
            except ValueError:
                pass
    return {f for f in found if len(f) >= 8}


def leaks(haystack: str, secrets: set[str]) -> list[str]:
    """The secrets some window of which ``haystack`` holds (case ignored)."""
    text = haystack.lower()
    found = []
    for secret in secrets:
        windows = {secret[i : i + WINDOW].lower() for i in range(max(1, len(secret) - WINDOW + 1))}
        if any(window in text for window in windows):
            found.append(secret)
    return found


async def start(way: Way, pop3_server, oauth2: tuple | None, folder, faults: Faults | None):
    """A server for ``way`` and a site with one record polling it; ``oauth2``
    is (provider, refresh token) for the OAuth 2.0 ways."""
    server = await pop3_server([Message("m1", b"Subject: one\r\n\r\nbody\r\n")], user=ACCOUNT, password=way.password,
                               faults=faults or Faults(), max_line=65536, **way.server_options)
    declaration = remote(server.host, server.port, account=ACCOUNT, password=way.password, timeout="1s",
                         **way.record_keys)
    if oauth2 is not None:
        provider, refresh_token = oauth2
        declaration += provider.record_table(refresh_token)
    return server, await open_site(folder, declaration)


async def outputs(site, result, folder) -> str:
    """Everything a user or another program may read after the poll."""
    (record,) = await site.store.list_records()
    status = await site.store.load_status(record.id)
    database = "".join(p.read_bytes().decode("latin-1") for p in folder.glob("*.sqlite*"))
    return "\n".join([result.detail, status.detail, json.dumps(await site.status(), default=str), database])


@pytest.mark.parametrize("way", WAYS, ids=[w.name for w in WAYS])
async def test_no_secret_in_any_output_whichever_step_the_server_fails_at(
    way, pop3_server, oauth2_provider, tmp_path, rpop_log
):
    oauth2 = None
    secrets = forms(way.password)
    if way.oauth2:
        provider = oauth2_provider(client_secret="cs-" + "k" * 40, token_size=5000)
        oauth2 = (provider, provider.add_account(ACCOUNT))
    # A poll that goes well shows how many lines rpop sends in a session.
    server, site = await start(way, pop3_server, oauth2, tmp_path / "clean", None)
    assert (await poll(site)).error is None
    await site.close()
    (session,) = server.sessions
    if way.name in ("plain-continued", "cram-md5", "xoauth2", "oauthbearer"):
        assert session.sasl_responses, "the credentials went on a line of their own"
    cuts = [(n, how) for n in range(1, len(session.commands) + len(session.sasl_responses) + 1)
            for how in ("drop", "stall")]

    async def poll_cut(n: int, how: str):
        folder = tmp_path / f"{how}-{n}"
        server, site = await start(way, pop3_server, oauth2, folder, Faults(cut_at_line=(n, how)))
        result = await poll(site)
        text = await outputs(site, result, folder)
        await site.close()
        return server, result, text

    polls = await asyncio.gather(*(poll_cut(n, how) for n, how in cuts))
    for server_ in [server] + [server for server, _, _ in polls]:
        secrets |= sent_secrets(server_)
    if oauth2 is not None:
        provider, refresh_token = oauth2
        for token in [refresh_token, provider.client_secret, *provider.issued]:
            secrets |= forms(token)
    assert [result.error for _, result, _ in polls] == ["protocol-error", "timeout"] * (len(cuts) // 2)
    for (n, how), (_, result, text) in zip(cuts, polls):
        assert not leaks(text, secrets), f"{how} at line {n}: {result.detail[:200]}"
    assert not leaks(rpop_log.text, secrets), "the log holds a secret"
    assert "****" in rpop_log.text
