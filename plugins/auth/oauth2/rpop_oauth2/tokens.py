"""Access tokens: the refresh-token grant (RFC 6749 section 6) and an
in-process cache.

:func:`request_token` makes one grant: an HTTPS POST with the standard
library's ``urllib``, run in a thread (``asyncio.to_thread``) so the event
loop keeps serving other polls.  :class:`TokenCache` keeps each access token
until shortly before it expires and makes at most one grant at a time per
refresh token.

What goes wrong becomes one of rpop's error types, so a poll ends with a
stable code:

=============================================  ===========================
the token endpoint says                        error (code)
=============================================  ===========================
``invalid_grant`` (refresh token revoked or    :class:`AuthFailed`
expired), ``invalid_client``,                  (``auth-failed``) -- the
``unauthorized_client``, ``invalid_scope``,    message carries the
any other OAuth error                          provider's
                                               ``error_description``
``temporarily_unavailable``, ``server_error``, :class:`ServerTemporaryFailure`
HTTP 408/429/5xx, no answer at all             (``server-temporary``)
(refused, reset, DNS, TLS)
no answer within the record's timeout          :class:`Timeout` (``timeout``)
another HTTP status (404: a wrong URL)         :class:`ServerPermanentFailure`
                                               (``server-permanent``)
HTTP 200 without a bearer ``access_token``     :class:`ProtocolError`
                                               (``protocol-error``)
=============================================  ===========================

Why not ``connect-failed`` for an unreachable token endpoint: that code is a
*host* failure, and the scheduler would then hold back every record of the
POP3 host, which is not the host that failed.  ``server-temporary`` is an
account failure: this record waits ``delay_failed_accounts`` and is tried
again.

Secrets: the refresh token, the client secret and the access token are never
part of a message or a ``repr``; should a provider echo one in its error
description, it is masked before the description is used.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
import urllib.parse
from typing import Callable

import attrs

from rpopcore.api import (
    AuthFailed,
    MechanismUnavailable,
    PollError,
    ProtocolError,
    ServerPermanentFailure,
    ServerTemporaryFailure,
    Timeout,
    is_loopback_host,
)

#: Seconds before its announced expiry that a cached access token is no
#: longer used, so it does not expire between the check and the login.
EXPIRY_MARGIN = 60.0

#: Lifetime assumed when the token endpoint does not say (``expires_in`` is
#: only RECOMMENDED by RFC 6749); Google and Microsoft always say.
DEFAULT_LIFETIME = 300.0

#: A token endpoint's answer is small; more than this is not read.
MAX_ANSWER = 1 << 20

_TEMPORARY_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
_TEMPORARY_STATUSES = frozenset({408, 425, 429})


@attrs.frozen
class RefreshGrant:
    """One refresh-token grant request, secrets in clear (made at the moment
    of use, never logged: ``repr`` hides them)."""

    token_endpoint: str
    client_id: str
    refresh_token: str = attrs.field(repr=False)
    client_secret: str = attrs.field(default="", repr=False)
    scope: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """What a cached token belongs to: the endpoint, the client and the
        refresh token's identity (a digest, so the cache's keys hold no
        secret)."""
        return (self.token_endpoint, self.client_id, hashlib.sha256(self.refresh_token.encode()).hexdigest())

    def form(self) -> dict[str, str]:
        """The ``application/x-www-form-urlencoded`` fields of the request.
        The client secret goes in the body (``client_secret_post``), which
        Google and Microsoft both accept; a public client has none."""
        fields = {
            "grant_type": "refresh_token",
            "refresh_token": self.refresh_token,
            "client_id": self.client_id,
        }
        if self.client_secret:
            fields["client_secret"] = self.client_secret
        if self.scope:
            fields["scope"] = self.scope
        return fields

    def mask(self, text: str) -> str:
        """``text`` with every secret of this grant replaced by ``****``."""
        for secret in (self.refresh_token, self.client_secret):
            if secret:
                text = text.replace(secret, "****")
        return text


@attrs.frozen
class TokenAnswer:
    """A successful grant: the access token, its lifetime in seconds, and
    the new refresh token when the provider rotates them (Microsoft does)."""

    access_token: str = attrs.field(repr=False)
    expires_in: float
    refresh_token: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class AccessToken:
    """A bearer token to log in with.  ``fresh``: obtained by this very
    request (a server refusing it is not helped by another refresh) rather
    than taken from the cache.  ``expires_at`` is on the cache's clock."""

    value: str = attrs.field(repr=False)
    expires_at: float
    fresh: bool
    #: A new refresh token the provider issued with this access token, to be
    #: stored in the record; None when it did not rotate it.
    rotated_refresh_token: str | None = attrs.field(default=None, repr=False)


async def request_token(grant: RefreshGrant, *, timeout: float, refresh_token: str | None = None) -> TokenAnswer:
    """Make one refresh-token grant at ``grant.token_endpoint``.

    :param refresh_token: use this instead of the grant's (a rotated one).
    :raises rpopcore.errors.PollError: see the module docstring's table.
    """
    # Imported here, not at the top: every rpop start loads this plugin, and
    # few sites use OAuth 2.0 (urllib.request and http.client cost ~5 ms).
    import urllib.error
    from http.client import HTTPException

    if refresh_token is not None:
        grant = attrs.evolve(grant, refresh_token=refresh_token)
    url = grant.token_endpoint
    try:
        status, body = await asyncio.to_thread(_post, url, grant.form(), timeout)
    except TimeoutError:
        raise Timeout(f"the token endpoint {url} did not answer within {timeout:g}s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise Timeout(f"the token endpoint {url} did not answer within {timeout:g}s") from None
        detail = getattr(reason, "strerror", None) or str(reason)
        raise ServerTemporaryFailure(f"cannot reach the token endpoint {url}: {grant.mask(detail)}") from None
    except (OSError, HTTPException) as exc:
        raise ServerTemporaryFailure(f"cannot reach the token endpoint {url}: {grant.mask(str(exc) or type(exc).__name__)}") from None
    answer = _json_object(body)
    if status == 200:
        return _token_answer(answer, url)
    raise _error_for(status, answer, grant)


def _post(url: str, fields: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """POST the form; (HTTP status, body).  Runs in a worker thread."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(fields).encode("ascii"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": "rpop",
        },
        method="POST",
    )
    host = urllib.parse.urlsplit(url).hostname or ""
    # Environment proxies apply to real providers, never to a loopback endpoint.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if is_loopback_host(host) else urllib.request.build_opener()
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, exc.read(MAX_ANSWER) if exc.fp is not None else b""
        finally:
            exc.close()


def check_endpoint(url: str) -> None:
    """Accept ``https://`` URLs, and ``http://`` to a loopback address.

    :raises rpopcore.errors.MechanismUnavailable: any other URL -- the
        refresh token must not cross a network in clear.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return
    raise MechanismUnavailable(
        f"token_endpoint {url!r} is not an https:// URL (plain http is allowed only to a loopback "
        "address, or the refresh token would cross the network in clear)"
    )


def _json_object(body: bytes) -> dict:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _token_answer(answer: dict, url: str) -> TokenAnswer:
    token = answer.get("access_token")
    kind = str(answer.get("token_type", "bearer")).lower()
    if not isinstance(token, str) or not token or kind != "bearer":
        raise ProtocolError(f"the token endpoint {url} answered without a bearer access_token")
    try:
        expires_in = float(answer.get("expires_in", DEFAULT_LIFETIME))
    except (TypeError, ValueError):
        expires_in = DEFAULT_LIFETIME
    rotated = answer.get("refresh_token")
    return TokenAnswer(token, max(0.0, expires_in), rotated if isinstance(rotated, str) and rotated else None)


def _error_for(status: int, answer: dict, grant: RefreshGrant) -> PollError:
    url = grant.token_endpoint
    code = answer.get("error")
    reason = ""
    if isinstance(code, str) and code:
        description = answer.get("error_description")
        reason = log_safe(grant.mask(f"{code}: {description}" if isinstance(description, str) and description else code))
        if code in _TEMPORARY_ERRORS:
            return ServerTemporaryFailure(f"the token endpoint {url} failed for now ({reason})")
        # RFC 6749 section 5.2: an error response is 400, or 401 for a client
        # that failed to authenticate.
        if code == "invalid_grant" and status in (400, 401):
            return AuthFailed(
                f"the token endpoint {url} refused the refresh token ({reason}); "
                "it was revoked or has expired: obtain a new refresh token and apply it"
            )
        if status in (400, 401):
            return AuthFailed(f"the token endpoint {url} refused the request ({reason}); check the record's oauth2 table")
    detail = f" ({reason})" if reason else ""
    if status in _TEMPORARY_STATUSES or status >= 500:
        return ServerTemporaryFailure(f"the token endpoint {url} answered HTTP {status}{detail}")
    return ServerPermanentFailure(f"the token endpoint {url} answered HTTP {status}{detail}; check token_endpoint")


def log_safe(text: str, limit: int = 300) -> str:
    """One log-safe line: control characters dropped, length bounded."""
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text if len(text) <= limit else text[:limit] + "..."


@attrs.define
class _Entry:
    token: AccessToken
    usable_until: float


class TokenCache:
    """Access tokens per (token endpoint, client id, refresh token identity),
    kept in this process until ``expires_in - margin`` seconds after they were
    obtained.  Concurrent polls sharing a refresh token wait for one grant.

    A rotated refresh token (the provider sends a new one with the access
    token) is remembered here and used for the next grant, and handed to the
    mechanism with the access token (:attr:`AccessToken.rotated_refresh_token`)
    so it is stored in the record and survives a restart.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, margin: float = EXPIRY_MARGIN):
        self.clock = clock
        self.margin = margin
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._rotated: dict[tuple[str, str, str], str] = {}
        self._inflight: dict[tuple[str, str, str], asyncio.Future] = {}

    async def token(self, grant: RefreshGrant, *, timeout: float) -> AccessToken:
        """A usable access token: the cached one, or a new one from the
        token endpoint.

        :raises rpopcore.errors.PollError: the grant failed (see the module
            docstring).
        """
        entry = self._entries.get(grant.key)
        if entry is not None and self.clock() < entry.usable_until:
            return attrs.evolve(entry.token, fresh=False)
        return await self.refresh(grant, timeout=timeout)

    async def refresh(self, grant: RefreshGrant, *, timeout: float) -> AccessToken:
        """A new access token from the token endpoint, whatever is cached;
        joins a grant already under way for the same refresh token."""
        key = grant.key
        loop = asyncio.get_running_loop()
        pending = self._inflight.get(key)
        if pending is None or pending.done() or pending.get_loop() is not loop:
            pending = loop.create_task(self._grant(grant, timeout))
            self._inflight[key] = pending
            pending.add_done_callback(functools.partial(self._done, key))
        # shield: a poll cancelled while waiting does not cancel the grant
        # others wait for.
        return await asyncio.shield(pending)

    def _done(self, key: tuple[str, str, str], task: asyncio.Future) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have been cancelled

    async def _grant(self, grant: RefreshGrant, timeout: float) -> AccessToken:
        key = grant.key
        answer = await request_token(grant, timeout=timeout, refresh_token=self._rotated.get(key))
        now = self.clock()
        token = AccessToken(answer.access_token, now + answer.expires_in, fresh=True,
                            rotated_refresh_token=answer.refresh_token)
        self._entries[key] = _Entry(token, now + answer.expires_in - self.margin)
        if answer.refresh_token is not None:
            self._rotated[key] = answer.refresh_token
        return token

    def forget(self, grant: RefreshGrant, token: AccessToken) -> None:
        """Drop ``token`` (a server refused it) unless it was replaced meanwhile."""
        entry = self._entries.get(grant.key)
        if entry is not None and entry.token.value == token.value:
            del self._entries[grant.key]

    def clear(self) -> None:
        """Forget every token (tests; a changed key file)."""
        self._entries.clear()
        self._rotated.clear()


#: The cache the mechanism plugins share in this process.
CACHE = TokenCache()
