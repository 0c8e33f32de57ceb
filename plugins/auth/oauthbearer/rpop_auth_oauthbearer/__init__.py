"""OAUTHBEARER login (RFC 7628): an OAuth 2.0 access token, obtained with the
record's ``oauth2`` refresh token, in a GS2 header naming the account.  The
exchange, the token cache and the retry are
:class:`rpop_oauth2.BearerMechanism`'s.

Client response (before base64; RFC 7628 section 3.1)::

    n,a=<account>,^Ahost=<server name>^Aport=<port>^Aauth=Bearer <token>^A^A

``,`` and ``=`` in the account are escaped as ``=2C`` and ``=3D`` (RFC 5801
saslname).  An error challenge (``+ <base64 JSON>``, e.g.
``{"status":"invalid_token"}``) is answered with a single %x01, base64
``AQ==`` (RFC 7628 section 3.2.3), after which the server fails the exchange.
"""

from __future__ import annotations

from rpop_oauth2 import BearerMechanism

from rpopcore.api import hookimpl


class OAuthBearer(BearerMechanism):
    name = "oauthbearer"
    auto_rank = 21
    sasl_name = "OAUTHBEARER"
    error_answer = "AQ=="

    def client_response(self, context, client, token: str) -> bytes:
        authzid = context.record.account.replace("=", "=3D").replace(",", "=2C")
        port = context.record.address[1]
        return f"n,a={authzid},\x01host={context.host_name}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode("utf-8")


@hookimpl
def rpop_auth_mechanisms():
    return [OAuthBearer()]
