"""Pytest fixtures for tests that talk to a real Dovecot.

``tests/conftest.py`` does ``from tests.support.fixtures import *``.

- ``test_ca`` (session): a :class:`~tests.support.tlsca.TestCA`; clients
  verify with ``test_ca.ca_pem_path``.
- ``server_cert`` (session): ``(cert_path, key_path)`` issued by ``test_ca``
  for localhost, 127.0.0.1, 127.0.0.2 and ::1.
- ``dovecot_factory`` (function): ``dovecot_factory(users=..., tls=True,
  lmtp=False, auth_mechanisms=..., **more Dovecot keywords)`` returns a started
  :class:`~tests.support.dovecot.Dovecot`; all are stopped at teardown.
  ``tls``: True (certificate from ``test_ca``), False/None (``ssl = no``) or a
  ``(cert_path, key_path)`` pair (e.g. from ``make_self_signed``).
- ``dovecot`` (function): a started instance with :data:`DEFAULT_USERS`
  (alice, bob) and TLS.
- ``postgresql_server`` (session): a real PostgreSQL on 127.0.0.1
  (:mod:`tests.support.postgresql`); ``postgresql_dsn`` (function): the DSN
  of a new empty database on it.

Without Dovecot installed these fixtures fail (never skip) and say how to
install it.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import pytest

from tests.support.dovecot import (
    DEFAULT_AUTH_MECHANISMS,
    INSTALL_HINT,
    Dovecot,
    missing_dovecot_parts,
)
from tests.support.tlsca import TestCA

__all__ = [
    "DEFAULT_USERS",
    "SERVER_CERT_NAMES",
    "require_dovecot",
    "test_ca",
    "server_cert",
    "dovecot_factory",
    "dovecot",
    "postgresql_server",
    "postgresql_dsn",
]

DEFAULT_USERS: Mapping[str, str] = {
    "alice": "alice-secret",
    "bob": "bob's p4ss word",
}

SERVER_CERT_NAMES = ("localhost", "127.0.0.1", "127.0.0.2", "::1")


def require_dovecot(*, lmtp: bool = True) -> None:
    """``pytest.fail`` (never skip) unless Dovecot can be run here."""
    missing = missing_dovecot_parts(lmtp=lmtp)
    if missing:
        pytest.fail(
            f"Dovecot is required for these tests but is not installed "
            f"(missing: {', '.join(missing)}).  Install it with:\n"
            f"    {INSTALL_HINT}",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail(
            "the Dovecot tests must run as root (Dovecot's master switches "
            "users; mail belongs to an unprivileged user)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="session")
def server_cert(test_ca, tmp_path_factory):
    return test_ca.issue(
        tmp_path_factory.mktemp("server-cert"), SERVER_CERT_NAMES, stem="server"
    )


@pytest.fixture
def dovecot_factory(server_cert) -> Callable[..., Dovecot]:
    started: list[Dovecot] = []

    def make(
        *,
        users: Mapping[str, str] | None = None,
        tls=True,
        lmtp: bool = False,
        auth_mechanisms: str = DEFAULT_AUTH_MECHANISMS,
        **kwargs,
    ) -> Dovecot:
        require_dovecot(lmtp=lmtp)
        if tls is True:
            tls = server_cert
        elif tls is False:
            tls = None
        server = Dovecot(
            users=DEFAULT_USERS if users is None else users,
            tls=tls,
            lmtp=lmtp,
            auth_mechanisms=auth_mechanisms,
            **kwargs,
        )
        started.append(server)
        return server.start()

    yield make
    errors = []
    for server in reversed(started):
        try:
            server.stop()
        except Exception as e:  # stop the others anyway
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def dovecot(dovecot_factory) -> Dovecot:
    return dovecot_factory(users=DEFAULT_USERS, tls=True)


# --- PostgreSQL ------------------------------------------------------------


@pytest.fixture(scope="session")
def postgresql_server():
    """A started :class:`~tests.support.postgresql.PostgreSQL` for the whole
    run (fails, never skips, without the binaries)."""
    from tests.support.postgresql import PostgreSQL, PostgreSQLNotInstalled

    try:
        server = PostgreSQL()
    except PostgreSQLNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgresql_dsn(postgresql_server) -> str:
    """The DSN of a new, empty database on the session's PostgreSQL."""
    return postgresql_server.create_database()
