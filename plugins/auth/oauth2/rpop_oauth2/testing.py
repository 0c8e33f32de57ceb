"""A small OAuth 2.0 provider for the tests, on 127.0.0.1 in a thread.

Two endpoints, as Google's or Microsoft's look to rpop and to Dovecot:

* ``POST /token`` -- the refresh-token grant (RFC 6749 section 6): for a
  known, unrevoked refresh token and the right client it issues a new
  access token (``expires_in`` seconds, optionally padded to ``token_size``
  characters, optionally with a rotated refresh token); a revoked one gets
  ``400 {"error": "invalid_grant", "error_description": ...}``.
* ``POST /introspect`` -- token introspection (RFC 7662), what Dovecot's
  ``oauth2`` passdb asks with ``introspection_mode = post``:
  ``{"active": true, "username": ...}`` for a live access token,
  ``{"active": false}`` for an unknown, expired or revoked one.

Tests expire access tokens and revoke refresh tokens on demand and read what
the endpoints saw (``grants``, ``introspections``).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs
import pytest

__all__ = ["Grant", "OAuth2Provider", "oauth2_provider"]

HOST = "127.0.0.1"


@attrs.frozen
class Grant:
    """One request the token endpoint saw (form fields as sent)."""

    refresh_token: str
    client_id: str
    client_secret: str
    scope: str
    grant_type: str


@attrs.define
class _Account:
    username: str
    revoked: bool = False


class OAuth2Provider:
    """See the module docstring.  ``client_secret`` "" means a public client
    (none may be sent); ``expires_in`` is what a grant announces;
    ``token_size`` pads access tokens to that many characters; ``rotate``
    issues a new refresh token with every access token (as Microsoft does).
    ``failures`` is a list of ``(status, json_body)`` answers the token
    endpoint gives, one per request, before it answers normally again."""

    def __init__(
        self,
        *,
        client_id: str = "rpop-test-client",
        client_secret: str = "",
        expires_in: int = 3600,
        token_size: int = 0,
        rotate: bool = False,
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.token_size = token_size
        self.rotate = rotate
        self.failures: list[tuple[int, dict]] = []
        self.grants: list[Grant] = []
        self.introspections: list[str] = []
        self.issued: list[str] = []
        self._accounts: dict[str, _Account] = {}  # refresh token -> account
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (username, expiry)
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> "OAuth2Provider":
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/token":
                    status, body = provider._token(form)
                elif self.path == "/introspect":
                    status, body = provider._introspect(form)
                else:
                    self.send_error(404)  # an HTML page, as a web server's
                    return
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="oauth2-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the provider first"
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def introspection_url(self) -> str:
        return self.base_url + "/introspect"

    def dovecot_settings(self) -> dict[str, str]:
        """The ``dovecot-oauth2.conf.ext`` settings that make Dovecot check
        bearer tokens here (``Dovecot(oauth2=...)``)."""
        return {
            "introspection_mode": "post",
            "introspection_url": self.introspection_url,
            "force_introspection": "yes",
            "username_attribute": "username",
            "username_format": "%Ln",
            "active_attribute": "active",
            "active_value": "true",
        }

    def record_table(self, refresh_token: str, **keys: str) -> str:
        """A record's ``oauth2 = { ... }`` line (TOML) for this provider;
        ``keys`` add or replace entries (``scope``, ``token_endpoint``...)."""
        values = {"token_endpoint": self.token_url, "client_id": self.client_id, "refresh_token": refresh_token}
        if self.client_secret:
            values["client_secret"] = self.client_secret
        values.update(keys)
        return "oauth2 = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in values.items()) + " }\n"

    # -- what tests do

    def add_account(self, username: str) -> str:
        """A new refresh token for ``username``."""
        refresh_token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._accounts[refresh_token] = _Account(username)
        return refresh_token

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token and every access token issued with it."""
        with self._lock:
            account = self._accounts[refresh_token]
            account.revoked = True
            for token, (username, _expiry) in list(self._tokens.items()):
                if username == account.username:
                    del self._tokens[token]

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        with self._lock:
            self._tokens.clear()

    def user_of(self, access_token: str) -> str | None:
        """Whom a live access token belongs to; None when it is unknown,
        expired or revoked (what introspection answers, for test servers
        other than Dovecot)."""
        with self._lock:
            found = self._tokens.get(access_token)
            return found[0] if found is not None and found[1] > time.monotonic() else None

    def grants_for(self, refresh_token: str) -> list[Grant]:
        with self._lock:
            return [g for g in self.grants if g.refresh_token == refresh_token]

    # -- the endpoints

    def _token(self, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            self.grants.append(
                Grant(
                    refresh_token=form.get("refresh_token", ""),
                    client_id=form.get("client_id", ""),
                    client_secret=form.get("client_secret", ""),
                    scope=form.get("scope", ""),
                    grant_type=form.get("grant_type", ""),
                )
            )
            if self.failures:
                return self.failures.pop(0)
            if form.get("grant_type") != "refresh_token":
                return 400, {"error": "unsupported_grant_type"}
            if form.get("client_id") != self.client_id or form.get("client_secret", "") != self.client_secret:
                return 401, {"error": "invalid_client", "error_description": "Unknown client or wrong secret."}
            account = self._accounts.get(form.get("refresh_token", ""))
            if account is None or account.revoked:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            token = f"at-{next(self._serial)}-" + secrets.token_urlsafe(24)
            if self.token_size > len(token):
                token += "x" * (self.token_size - len(token))
            self._tokens[token] = (account.username, time.monotonic() + self.expires_in)
            self.issued.append(token)
            body = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in, "scope": form.get("scope", "")}
            if self.rotate:
                # As Microsoft may: the old refresh token stops working.
                new = "rt-" + secrets.token_urlsafe(24)
                self._accounts[new] = account
                del self._accounts[form["refresh_token"]]
                body["refresh_token"] = new
            return 200, body

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict]:
        token = form.get("token", "")
        with self._lock:
            self.introspections.append(token)
        username = self.user_of(token)
        if username is None:
            return 200, {"active": False}
        return 200, {"active": True, "username": username, "token_type": "Bearer"}


@pytest.fixture
def oauth2_provider():
    """A factory: ``oauth2_provider(**options)`` starts an
    :class:`OAuth2Provider`; all are stopped after the test."""
    started: list[OAuth2Provider] = []

    def make(**options) -> OAuth2Provider:
        provider = OAuth2Provider(**options).start()
        started.append(provider)
        return provider

    yield make
    for provider in started:
        provider.stop()
