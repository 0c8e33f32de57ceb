"""Logging in with a bearer token over POP3 SASL (RFC 5034): what XOAUTH2
and OAUTHBEARER (RFC 7628) have in common.  A mechanism plugin subclasses
:class:`BearerMechanism` and says only how its client response looks and how
it answers an error challenge.

The exchange, in the forms Gmail and Microsoft 365 use:

* ``AUTH <MECH> <base64 payload>`` when that line, CRLF included, fits RFC
  5034's 255 octets; otherwise -- always, with real tokens -- the two-step
  form ``AUTH <MECH>``, the server's empty challenge ``+ ``, then the payload
  on a line of its own.  No line-length cap applies to that line (Microsoft's
  tokens exceed 4 KB).
* A refused token comes back as a challenge ``+ <base64 JSON status>``; it is
  answered as the mechanism requires (XOAUTH2: an empty line; OAUTHBEARER: a
  single %x01) and the server then ends with ``-ERR``.  The JSON goes into
  the :class:`rpopcore.errors.AuthFailed` message.
* If the refused token came from the cache (the provider may have revoked or
  expired it early), it is dropped, a new one is obtained with the refresh
  token, and the login is tried once more with a new ``AUTH``: after ``-ERR``
  the session is still in the AUTHORIZATION state.  A token obtained for this
  very login is not retried: a second one would be refused the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING

from rpop_oauth2.account import OAuth2Account
from rpop_oauth2.tokens import CACHE, AccessToken, TokenCache, log_safe
from rpopcore.api import LINK, PROBLEM, PROTOCOL, AuthFailed, MechanismUnavailable

if TYPE_CHECKING:  # loading the plugin must not load the POP3 client: every command would pay for it
    from rpopcore.api import AuthContext, Pop3Client

#: RFC 5034 section 4: the AUTH command, CRLF included, is at most 255 octets;
#: an initial response that would make it longer is not sent.
MAX_AUTH_COMMAND = 255


class BearerMechanism:
    """A SASL mechanism that presents an OAuth 2.0 access token.

    Offered when the record has an ``oauth2`` table and the server lists the
    mechanism in its CAPA ``SASL`` line, or the record names it with
    ``auth = "..."`` (a server that does not announce it then answers
    ``-ERR`` and the login fails as ``auth-failed``).
    """

    #: The lower-case name a record's ``auth`` key uses.
    name: str
    #: Lower is preferred in ``auto`` selection.
    auto_rank: int
    #: The SASL mechanism name sent in ``AUTH``.
    sasl_name: str
    #: The base64 answer to an error challenge.
    error_answer: str

    def __init__(self, tokens: TokenCache | None = None):
        self.tokens = tokens if tokens is not None else CACHE

    def client_response(self, context: AuthContext, client: Pop3Client, token: str) -> bytes:
        """The mechanism's client response carrying ``token`` (not yet base64)."""
        raise NotImplementedError

    def offered(self, context: AuthContext) -> bool:
        if not context.record.options.get("oauth2"):
            return False
        return self.sasl_name in context.capabilities.sasl or context.record.auth == self.name

    async def authenticate(self, client: Pop3Client, context: AuthContext, secret: str) -> None:
        """Log in with the record's access token (the record's password,
        ``secret``, is not used).  See the module docstring for the retry."""
        account = OAuth2Account.of(context.record)
        if account is None:
            raise MechanismUnavailable("the record has no oauth2 table")
        grant = account.grant(context.reveal)
        timeout = float(context.record.timeout or context.settings.timeout)
        token = await self.tokens.token(grant, timeout=timeout)
        await self._keep_rotated(context, token)
        self._log_token(client, token, grant.token_endpoint)
        try:
            await self._login(client, context, token)
        except AuthFailed as refused:
            if token.fresh:
                raise
            client.log.log(
                PROBLEM,
                "%s: the server refused the cached access token (%s); getting a new one and trying again",
                self.name,
                refused,
            )
            self.tokens.forget(grant, token)
            token = await self.tokens.refresh(grant, timeout=timeout)
            await self._keep_rotated(context, token)
            self._log_token(client, token, grant.token_endpoint)
            await self._login(client, context, token)

    @staticmethod
    async def _keep_rotated(context: AuthContext, token: AccessToken) -> None:
        """Providers that rotate refresh tokens (Microsoft) may invalidate the
        old one: store the new one in the record before anything else."""
        if token.fresh and token.rotated_refresh_token and context.store_secret is not None:
            await context.store_secret("oauth2.refresh_token", token.rotated_refresh_token)

    def _log_token(self, client: Pop3Client, token: AccessToken, endpoint: str) -> None:
        left = max(0, round(token.expires_at - self.tokens.clock()))
        if token.fresh:
            client.log.log(PROTOCOL, "%s: new access token from %s, valid for %d s", self.name, endpoint, left)
        else:
            client.log.log(LINK, "%s: cached access token, valid for %d s more", self.name, left)

    async def _login(self, client: Pop3Client, context: AuthContext, token: AccessToken) -> None:
        payload = base64.b64encode(self.client_response(context, client, token.value)).decode("ascii")
        fits = len(f"AUTH {self.sasl_name} {payload}\r\n".encode("ascii")) <= MAX_AUTH_COMMAND
        exchange = _Exchange(payload, self.error_answer, sent=fits)
        try:
            await client.auth(self.sasl_name, payload if fits else None, exchange.respond)
        except AuthFailed as exc:
            if exchange.server_error is None:
                raise
            raise AuthFailed(f"{exc} (the server's SASL error: {exchange.server_error})") from None


class _Exchange:
    """Answers the server's challenges within one AUTH: the first empty
    challenge of the two-step form gets the payload; a challenge after the
    payload is an error report; a third one is cancelled (RFC 5034 "*")."""

    def __init__(self, payload: str, error_answer: str, *, sent: bool):
        self.payload = payload
        self.error_answer = error_answer
        self.sent = sent
        self.server_error: str | None = None

    async def respond(self, challenge: str) -> str:
        if not self.sent:
            self.sent = True
            return self.payload
        if self.server_error is None:
            self.server_error = _describe(challenge)
            return self.error_answer
        return "*"


def _describe(challenge: str) -> str:
    """The server's error challenge as one log-safe line: the JSON object
    compacted, or the decoded text."""
    try:
        raw = base64.b64decode(challenge, validate=True)
    except (binascii.Error, ValueError):
        return log_safe(challenge) or "(malformed challenge)"
    text = raw.decode("utf-8", "replace")
    try:
        text = json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        pass
    return log_safe(text) or "(empty challenge)"
