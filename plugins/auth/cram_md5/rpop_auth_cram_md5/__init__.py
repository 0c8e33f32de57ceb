"""SASL CRAM-MD5 (RFC 2195) through POP3 AUTH (RFC 5034): the server sends a
challenge, the client answers with the user name and HMAC-MD5(password,
challenge), so the password never crosses the wire.

In ``auto`` selection it is offered only on a connection without TLS: there
it keeps the password off the wire; on TLS the channel already does, and
SASL PLAIN is preferred (it works with every password store, CRAM-MD5 only
with servers that keep passwords in clear).  A record that names
``auth = "cram-md5"`` gets it whenever the server lists it, TLS or not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from rpopcore.api import ProtocolError, hookimpl


class CramMd5:
    """AUTH CRAM-MD5, offered when CAPA's SASL line lists it: in auto only
    without TLS, when named by the record always."""

    name = "cram-md5"
    auto_rank = 40

    def offered(self, context) -> bool:
        if "CRAM-MD5" not in context.capabilities.sasl:
            return False
        return context.record.auth == self.name or not context.tls_active

    async def authenticate(self, client, context, secret: str) -> None:
        sent = False

        async def respond(challenge_b64: str) -> str:
            nonlocal sent
            if sent:
                raise ProtocolError("AUTH CRAM-MD5: the server sent a second challenge")
            try:
                challenge = base64.b64decode(challenge_b64, validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(f"AUTH CRAM-MD5: the challenge is not base64: {challenge_b64[:80]!r}") from None
            if not challenge:
                raise ProtocolError("AUTH CRAM-MD5: the server sent an empty challenge")
            digest = hmac.new(secret.encode("utf-8"), challenge, hashlib.md5).hexdigest()
            sent = True
            return base64.b64encode(f"{context.record.account} {digest}".encode("utf-8")).decode("ascii")

        # A refusal of AUTH CRAM-MD5 itself is MechanismUnavailable (the client
        # decides that); after the challenge was answered it is auth-failed.
        await client.auth("CRAM-MD5", None, respond)


@hookimpl
def rpop_auth_mechanisms():
    return [CramMd5()]
