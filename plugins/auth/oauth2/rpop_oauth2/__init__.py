"""OAuth 2.0 for rpop's SASL mechanisms: a library, not a plugin.

The XOAUTH2 and OAUTHBEARER plugins share everything but the shape of their
client response, and it lives here:

* :mod:`rpop_oauth2.account` -- a record's ``oauth2`` table
  (``token_endpoint``, ``client_id``, ``client_secret``, ``refresh_token``,
  ``scope``) with its sealed secrets;
* :mod:`rpop_oauth2.tokens` -- the refresh-token grant and the in-process
  access-token cache, and how their failures map to error codes;
* :mod:`rpop_oauth2.sasl` -- :class:`BearerMechanism`, the POP3 SASL exchange
  with a bearer token (initial response or two-step form, the error
  challenge, one retry with a new token).

* :mod:`rpop_oauth2.options` -- the ``oauth2`` record key, declared to the
  core through :func:`rpop_record_options`.

Its ``rpop`` entry point (``oauth2``) contributes that key and no
mechanism; it is installed as a dependency of the mechanism plugins.
"""

from rpopcore.api import hookimpl

from rpop_oauth2.account import OAuth2Account
from rpop_oauth2.options import OAUTH2_OPTION
from rpop_oauth2.sasl import BearerMechanism
from rpop_oauth2.tokens import (
    CACHE,
    AccessToken,
    RefreshGrant,
    TokenAnswer,
    TokenCache,
    request_token,
)

__all__ = [
    "CACHE",
    "AccessToken",
    "BearerMechanism",
    "OAuth2Account",
    "RefreshGrant",
    "TokenAnswer",
    "TokenCache",
    "request_token",
]


@hookimpl
def rpop_record_options():
    return [OAUTH2_OPTION]
