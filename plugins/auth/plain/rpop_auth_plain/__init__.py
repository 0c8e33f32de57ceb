"""SASL PLAIN (RFC 4616) through POP3 AUTH (RFC 5034): the user name and the
password in one base64 message.  Offered when the server's CAPA lists PLAIN
on its SASL line.  The password crosses the wire in clear, so ``auto``
prefers it only where that costs nothing: on a TLS connection (CRAM-MD5 ranks
first on a clear one, but steps aside on TLS; see ``rpop_auth_cram_md5``).

The credentials go on the AUTH line as the initial response when the line
fits in the 255 octets RFC 2449 allows a command; otherwise the client sends
``AUTH PLAIN`` alone and answers the server's empty challenge, as RFC 5034
section 4 requires.
"""

from __future__ import annotations

import base64

from rpopcore.api import ProtocolError, hookimpl

#: RFC 2449 section 4: a command is at most 255 octets, CRLF included.
MAX_COMMAND_OCTETS = 255


class Plain:
    """AUTH PLAIN, offered when CAPA's SASL line lists PLAIN."""

    name = "plain"
    auto_rank = 50
    sends_password_in_clear = True

    def offered(self, context) -> bool:
        return "PLAIN" in context.capabilities.sasl

    async def authenticate(self, client, context, secret: str) -> None:
        # Empty authorization identity: log in as the authentication identity.
        message = b"\0" + context.record.account.encode("utf-8") + b"\0" + secret.encode("utf-8")
        token = base64.b64encode(message).decode("ascii")
        if len(f"AUTH PLAIN {token}\r\n".encode("ascii")) <= MAX_COMMAND_OCTETS:
            await client.auth("PLAIN", token, _no_second_challenge)
            return

        sent = False

        async def respond(challenge: str) -> str:
            # PLAIN's one challenge is empty (RFC 4616); whatever it holds,
            # the answer is the same message.
            nonlocal sent
            if sent:
                await _no_second_challenge(challenge)
            sent = True
            return token

        # A refusal of AUTH PLAIN itself is MechanismUnavailable (the client
        # decides that); after the challenge was answered it is auth-failed.
        await client.auth("PLAIN", None, respond)


async def _no_second_challenge(challenge: str) -> str:
    raise ProtocolError("AUTH PLAIN: the server sent a challenge after the credentials")


@hookimpl
def rpop_auth_mechanisms():
    return [Plain()]
