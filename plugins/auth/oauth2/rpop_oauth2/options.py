"""The record key this distribution adds: ``oauth2``, a table with the
token endpoint, the client and the refresh token.  The core reads, checks,
seals, exports and re-seals it from this one declaration."""

from __future__ import annotations

import urllib.parse

from rpopcore.api import REQUIRED, Key, RecordOption, is_loopback_host, non_empty_string, string


def _token_endpoint(value) -> str:
    """HTTPS, or plain HTTP only to this machine (a test or a local proxy):
    refresh tokens and client secrets must not cross a network in clear."""
    url = urllib.parse.urlsplit(non_empty_string(value))
    host = url.hostname or ""
    if url.scheme == "https" and host or (url.scheme == "http" and host and is_loopback_host(host)):
        return value.strip()
    raise ValueError(f"{value!r} is not an https:// URL (plain http:// is allowed only to 127.0.0.1 or ::1)")


OAUTH2_KEYS = {
    "token_endpoint": Key(_token_endpoint),
    "client_id": Key(non_empty_string),
    "client_secret": Key(string, ""),
    "refresh_token": Key(string, ""),
    "scope": Key(string, ""),
}


def oauth2_table(value) -> dict:
    """The ``oauth2`` table, checked; ``refresh_token`` may be left out only
    to keep the one already stored (the core checks that one is)."""
    if not isinstance(value, dict):
        raise ValueError("expected a table: oauth2 = { token_endpoint = \"...\", client_id = \"...\", refresh_token = \"...\" }")
    unknown = sorted(set(value) - set(OAUTH2_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; known keys: {', '.join(OAUTH2_KEYS)}")
    missing = [k for k, key in OAUTH2_KEYS.items() if key.default is REQUIRED and k not in value]
    if missing:
        raise ValueError(f"{missing[0]!r} is missing")
    return {k: OAUTH2_KEYS[k].convert(v) for k, v in value.items()}


OAUTH2_OPTION = RecordOption(
    name="oauth2",
    convert=oauth2_table,
    help="OAuth 2.0 for XOAUTH2 and OAUTHBEARER: { token_endpoint, client_id, client_secret, refresh_token, scope }",
    secret_keys=("client_secret", "refresh_token"),
    required_secret_keys=("refresh_token",),
    credential=True,
)
