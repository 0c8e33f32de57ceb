"""Who is signing in, and who is signed in.

A sign-in names a local address (an alias works: it becomes its account)
and a password, checked by the authenticators plugins contribute
(:func:`rpopcore.hookspecs.rpop_web_authenticators`; the built-in one keeps
Argon2 hashes in the state store).  A successful page sign-in starts a
session: a random token in an HttpOnly cookie, of which the store keeps a
SHA-256 digest only, with its own CSRF token; it ends at sign-out, after
:data:`SESSION_LIFETIME`, or when the account's web password changes.
Scripts send HTTP Basic credentials with each request instead.

Failed sign-ins are limited per address and per client IP
(:class:`FailureLimit`) and logged at "problems" without the password.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import logging
import secrets
import time
from typing import Protocol

from rpopcore import logs
from rpopcore.model import WebSession
from rpopcore.state import StateStore
from rpopcore.web.operations import Caller, Operations

log = logging.getLogger("rpop.web")

SESSION_COOKIE = "rpop_session"
SESSION_LIFETIME = dt.timedelta(hours=8)


class WebAuthenticator(Protocol):
    """What :func:`rpopcore.hookspecs.rpop_web_authenticators` contributes."""

    name: str

    async def authenticate(self, address: str, password: str, store: StateStore) -> bool:
        """True when ``password`` is right for the local ``address``."""

    async def set_password(self, address: str, password: str, store: StateStore) -> bool:
        """Store a new password; False when this authenticator keeps none.
        Raises ValueError saying why a password is refused (too short)."""


class FailureLimit:
    """At most ``per_address`` failed sign-ins per address and ``per_client``
    per client IP within ``window`` seconds; past that, sign-ins from there
    are refused without checking the password until the oldest failure is
    ``window`` old.  Kept in memory: a restart forgives."""

    def __init__(self, per_address: int = 5, per_client: int = 20, window: float = 900.0,
                 clock=time.monotonic):
        self.per_address, self.per_client, self.window, self.clock = per_address, per_client, window, clock
        self._failures: dict[str, collections.deque] = {}

    def wait(self, address: str, client: str) -> float:
        """Seconds until a sign-in for ``address`` from ``client`` may be
        tried again; 0 when it may now."""
        now = self.clock()
        longest = 0.0
        for key, limit in ((f"address:{address}", self.per_address), (f"client:{client}", self.per_client)):
            failures = self._recent(key, now)
            if len(failures) >= limit:
                longest = max(longest, failures[0] + self.window - now)
        return longest

    def failed(self, address: str, client: str) -> None:
        now = self.clock()
        for key in (f"address:{address}", f"client:{client}"):
            self._recent(key, now).append(now)

    def _recent(self, key: str, now: float) -> collections.deque:
        failures = self._failures.setdefault(key, collections.deque())
        while failures and failures[0] + self.window <= now:
            failures.popleft()
        return failures


class TooManyFailures(Exception):
    def __init__(self, seconds: float):
        minutes = max(1, round(seconds / 60))
        super().__init__(f"too many failed sign-ins; try again in {minutes} minute{'s' if minutes > 1 else ''}")


class SignIn:
    """Checking credentials and keeping sessions for one site."""

    def __init__(self, operations: Operations, authenticators: list[WebAuthenticator],
                 limit: FailureLimit | None = None):
        self.operations = operations
        self.store = operations.site.store
        self.authenticators = authenticators
        self.limit = limit or FailureLimit()

    async def check(self, address: str, password: str, client: str) -> Caller | None:
        """The caller these credentials make, or None.  Raises
        :class:`TooManyFailures` while the address or client is limited."""
        given = address.strip().lower()
        wait = self.limit.wait(given, client)
        if wait > 0:
            log.log(logs.PROBLEM, "[web] sign-in refused for %s from %s: too many failures", given, client)
            raise TooManyFailures(wait)
        local = await self.operations.local_address(given) if given else None
        for authenticator in self.authenticators if local else ():
            if await authenticator.authenticate(local, password, self.store):
                return Caller(local, self.operations.role_of(local))
        self.limit.failed(given, client)
        log.log(logs.PROBLEM, "[web] sign-in failed for %s from %s", given or "(no address)", client)
        return None

    async def start_session(self, caller: Caller) -> tuple[str, WebSession]:
        """A new session: the token for the cookie, and the session."""
        token = secrets.token_urlsafe(32)
        session = WebSession(
            key=_digest(token), address=caller.address, csrf=secrets.token_urlsafe(32),
            expires=dt.datetime.now(dt.timezone.utc) + SESSION_LIFETIME,
        )
        await self.store.save_web_session(session)
        return token, session

    async def session(self, token: str | None) -> tuple[Caller, WebSession] | None:
        """The caller and session a cookie's token belongs to, if it lives."""
        if not token:
            return None
        session = await self.store.load_web_session(_digest(token))
        if session is None:
            return None
        return Caller(session.address, self.operations.role_of(session.address)), session

    async def end_session(self, token: str | None) -> None:
        if token:
            await self.store.delete_web_session(_digest(token))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def set_password(authenticators: list[WebAuthenticator], address: str, password: str, store) -> str:
    """Store ``password`` for ``address`` through the first authenticator
    that keeps passwords; returns its name.  ValueError when none does or
    the password is refused."""
    for authenticator in authenticators:
        if await authenticator.set_password(address, password, store):
            return authenticator.name
    raise ValueError("no installed plugin keeps web passwords; install rpop-web-password")
