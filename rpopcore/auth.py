"""Choosing and running an authentication mechanism for one connection.

Mechanisms come from plugins (:func:`rpopcore.hookspecs.rpop_auth_mechanisms`);
this module only decides which one to use.  A record's ``auth`` names one
mechanism, or ``auto``: every mechanism that is offered on this connection,
in ``auto_rank`` order, until one logs in.  A refusal of the credentials
(``auth-failed``) ends the attempt; a mechanism that turns out to be
unusable (:class:`rpopcore.errors.MechanismUnavailable`) passes to the next.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Protocol, Sequence

import attrs

from rpopcore import errors, logs
from rpopcore.model import ModuleSettings, RemoteRecord, SecretRef
from rpopcore.pop3.client import Pop3Client
from rpopcore.pop3.responses import Capabilities


@attrs.frozen
class AuthContext:
    """What a mechanism may look at to decide whether it can be used."""

    record: RemoteRecord
    settings: ModuleSettings
    host_name: str  # the record's server name (RemoteRecord.name), without port
    apop_timestamp: str | None  # from the greeting, if any
    capabilities: Capabilities
    tls_active: bool
    #: Reveals a secret the record stores besides its password (a secret
    #: part of a key a plugin adds, :mod:`rpopcore.options`):
    #: ``reveal(SecretRef)`` -> the secret in clear.
    reveal: Callable[[SecretRef], str] = lambda ref: ""
    #: Replaces a secret the record stores, ``("KEY.SECRET_KEY", new)`` for a
    #: secret part of a key a plugin adds (a refresh token its provider
    #: rotated): sealed with the site key and saved in the record, durably,
    #: before this returns.
    store_secret: Callable[[str, str], Awaitable[None]] | None = None


class AuthMechanism(Protocol):
    """What an authentication plugin contributes."""

    #: The lower-case name a record's ``auth`` key uses.
    name: str
    #: Lower is preferred in ``auto`` selection.
    auto_rank: int
    #: True when the password itself crosses the wire (USER/PASS, PLAIN):
    #: rpop warns once per record when that happens without TLS.
    sends_password_in_clear: bool

    def offered(self, context: AuthContext) -> bool:
        """Whether this mechanism may be used on this connection: the server
        offers it and the module settings and the record allow it.  Asked for
        a mechanism the record names, too: a named mechanism that is not
        offered fails with ``auth-unavailable`` rather than sending a
        password some other way."""

    async def authenticate(self, client: Pop3Client, context: AuthContext, secret: str) -> None:
        """Log in, raising :class:`rpopcore.errors.AuthFailed` when the
        credentials are refused or :class:`MechanismUnavailable` when the
        mechanism cannot be used here."""


async def login(
    client: Pop3Client,
    context: AuthContext,
    mechanisms: Sequence[AuthMechanism],
    secret: str,
    log: logging.LoggerAdapter | logging.Logger,
) -> str:
    """Log in with the record's choice of mechanism; returns its name."""
    wanted = context.record.auth
    if wanted != "auto":
        chosen = [m for m in mechanisms if m.name == wanted]
        if not chosen:
            raise errors.MechanismUnavailable(f"no installed plugin provides auth = {wanted!r}")
        if not chosen[0].offered(context):
            raise errors.MechanismUnavailable(f"the server or the module settings do not allow auth = {wanted!r} here")
    else:
        chosen = sorted((m for m in mechanisms if m.offered(context)), key=lambda m: m.auto_rank)
        if not chosen:
            raise errors.MechanismUnavailable("no installed authentication mechanism is offered by this server")
    last: errors.PollError | None = None
    for mechanism in chosen:
        try:
            await mechanism.authenticate(client, context, secret)
        except errors.MechanismUnavailable as exc:
            log.log(logs.PROBLEM, "%s cannot be used (%s); trying the next mechanism", mechanism.name, exc)
            last = exc
            continue
        log.log(logs.PROTOCOL, "logged in with %s", mechanism.name)
        return mechanism.name
    raise last or errors.MechanismUnavailable("no mechanism could be used")
