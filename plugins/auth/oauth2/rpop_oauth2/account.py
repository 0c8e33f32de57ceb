"""A record's ``oauth2`` table, as the declarative file left it in
``record.options["oauth2"]``: plain values, and the two secrets
(``client_secret``, ``refresh_token``) as sealed ``{"source", "value"}``
dicts that become :class:`rpopcore.model.SecretRef` here and are revealed
only at the moment of use."""

from __future__ import annotations

from typing import Callable, Mapping

import attrs

from rpop_oauth2.tokens import RefreshGrant, check_endpoint
from rpopcore.api import MechanismUnavailable, RemoteRecord, SecretRef, SecretUnavailable


@attrs.frozen
class OAuth2Account:
    """Where and with which client a record's access tokens are obtained."""

    token_endpoint: str
    client_id: str
    refresh_token: SecretRef = attrs.field(repr=False)
    client_secret: SecretRef = attrs.field(factory=SecretRef, repr=False)
    scope: str = ""

    @classmethod
    def of(cls, record: RemoteRecord) -> "OAuth2Account | None":
        """The record's oauth2 table, or None when it has none.

        :raises rpopcore.errors.SecretUnavailable: the stored table is not
            what the declarative file writes (a secret that is no sealed
            reference, a required key missing).
        """
        table = record.options.get("oauth2")
        if not table:
            return None
        if not isinstance(table, Mapping):
            raise SecretUnavailable("the record's oauth2 settings are not a table; apply the declarative file again")
        missing = [k for k in ("token_endpoint", "client_id", "refresh_token") if not table.get(k)]
        if missing:
            raise SecretUnavailable(f"the record's oauth2 table has no {missing[0]}; apply the declarative file again")
        return cls(
            token_endpoint=str(table["token_endpoint"]),
            client_id=str(table["client_id"]),
            refresh_token=_secret_ref(table["refresh_token"], "refresh_token"),
            client_secret=_secret_ref(table.get("client_secret") or None, "client_secret"),
            scope=str(table.get("scope") or ""),
        )

    def grant(self, reveal: Callable[[SecretRef], str]) -> RefreshGrant:
        """The refresh-token grant with the secrets in clear (``reveal`` is
        :attr:`rpopcore.auth.AuthContext.reveal`).

        :raises rpopcore.errors.MechanismUnavailable: the token endpoint is
            not HTTPS (plain HTTP is allowed to a loopback address only: the
            refresh token must not cross a network in clear).
        """
        check_endpoint(self.token_endpoint)
        return RefreshGrant(
            token_endpoint=self.token_endpoint,
            client_id=self.client_id,
            refresh_token=reveal(self.refresh_token),
            client_secret=reveal(self.client_secret) if self.client_secret.source != "none" else "",
            scope=self.scope,
        )


def _secret_ref(value: object, name: str) -> SecretRef:
    if value is None:
        return SecretRef()
    if isinstance(value, Mapping) and set(value) <= {"source", "value"}:
        try:
            return SecretRef(**value)
        except (TypeError, ValueError):
            pass
    # Never echo the value: it may be a secret that escaped sealing.
    raise SecretUnavailable(
        f"the record's oauth2 {name} is not a sealed secret; apply the declarative file again"
    )

