"""XOAUTH2 login (Google's and Microsoft's SASL mechanism): the account name
and an OAuth 2.0 access token, obtained with the record's ``oauth2`` refresh
token.  The exchange, the token cache and the retry are
:class:`rpop_oauth2.BearerMechanism`'s.

Client response (before base64)::

    user=<account>^Aauth=Bearer <token>^A^A

An error challenge (``+ <base64 JSON>``, e.g. ``{"status":"401",...}``) is
answered with an empty line, as Google and Microsoft document.
"""

from __future__ import annotations

from rpop_oauth2 import BearerMechanism

from rpopcore.api import hookimpl


class XOAuth2(BearerMechanism):
    name = "xoauth2"
    auto_rank = 20
    sasl_name = "XOAUTH2"
    error_answer = ""

    def client_response(self, context, client, token: str) -> bytes:
        return f"user={context.record.account}\x01auth=Bearer {token}\x01\x01".encode("utf-8")


@hookimpl
def rpop_auth_mechanisms():
    return [XOAuth2()]
