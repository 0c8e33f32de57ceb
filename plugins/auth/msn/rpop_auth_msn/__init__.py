"""AUTH MSN: NTLM under the mechanism name MSN, as historic MSN/Hotmail POP3
servers expected it.

The exchange: ``AUTH MSN``; the server answers ``+`` (empty, or already an
NTLM CHALLENGE); the client sends the base64 NTLM NEGOTIATE; the server sends
``+ <base64 CHALLENGE>``; the client sends the base64 NTLM AUTHENTICATE; the
server says +OK or -ERR.  The NTLM messages come from pyspnego's own NTLM
implementation, which carries a pure-Python MD4 (OpenSSL 3 disables MD4).

Offered in ``auto`` selection, before anything else, when the record's server
name ends with ``.msn.com``; and whenever a record names ``auth = "msn"``
(such servers need not list MSN in CAPA, or answer CAPA at all).
"""

from __future__ import annotations

import base64
import binascii

from rpopcore.api import AuthFailed, MechanismUnavailable, ProtocolError, hookimpl

#: The NTLM signature and the message type of a CHALLENGE (MS-NLMP 2.2.1.2).
_NTLM_CHALLENGE = b"NTLMSSP\0\x02\0\0\0"


class Msn:
    """AUTH MSN, offered to *.msn.com servers in auto and to any server
    when named by the record."""

    name = "msn"
    auto_rank = 10

    def offered(self, context) -> bool:
        return context.record.auth == self.name or context.host_name.rstrip(".").lower().endswith(".msn.com")

    async def authenticate(self, client, context, secret: str) -> None:
        import spnego  # here, not at the top: it costs 50 ms at every rpop start

        # use_ntlm: always pyspnego's Python NTLM, never a system GSSAPI or
        # SSPI provider, so the exchange is the same on every machine.
        ntlm = spnego.client(
            context.record.account,
            secret,
            hostname=context.host_name,
            service="pop",
            protocol="ntlm",
            options=spnego.NegotiateOptions.use_ntlm,
        )
        exchange = _Exchange(ntlm)
        try:
            await client.auth("MSN", None, exchange.respond)
        except AuthFailed as exc:
            # NEGOTIATE carries no credential: a refusal before AUTHENTICATE
            # went out is about the mechanism, unless the server says [AUTH].
            if not exchange.proved and exc.response_code != "AUTH":
                raise MechanismUnavailable(f"the server refused AUTH MSN ({exc})") from None
            raise


class _Exchange:
    """The client's side of one AUTH MSN exchange, a challenge at a time."""

    def __init__(self, ntlm) -> None:
        self.ntlm = ntlm
        self.negotiated = False
        #: AUTHENTICATE went out: from here a refusal is about the password.
        self.proved = False

    async def respond(self, challenge_b64: str) -> str:
        if self.proved:
            raise ProtocolError("AUTH MSN: the server sent a challenge after NTLM AUTHENTICATE")
        try:
            data = base64.b64decode(challenge_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"AUTH MSN: the challenge is not base64: {challenge_b64[:80]!r}") from None
        is_challenge = data.startswith(_NTLM_CHALLENGE)
        try:
            if not self.negotiated:
                self.negotiated = True
                negotiate = self.ntlm.step(None)
                if not is_challenge:
                    # The usual first "+": empty, waiting for NEGOTIATE.
                    return _b64(negotiate)
                # A server that sends its CHALLENGE at once: answer it.
            elif not is_challenge:
                raise ProtocolError("AUTH MSN: the answer to NTLM NEGOTIATE is not an NTLM CHALLENGE")
            authenticate = self.ntlm.step(data)
        except _spnego_error() as exc:
            raise ProtocolError(f"AUTH MSN: the server's NTLM CHALLENGE cannot be used: {exc}") from None
        self.proved = True
        return _b64(authenticate)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@hookimpl
def rpop_auth_mechanisms():
    return [Msn()]


def _spnego_error() -> type[Exception]:
    import spnego.exceptions

    return spnego.exceptions.SpnegoError
