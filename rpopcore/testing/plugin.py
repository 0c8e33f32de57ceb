"""The rpop test kit as a pytest plugin, registered through the ``pytest11``
entry point: installing ``rpop[testing]`` is enough, nothing to import.

Fixtures (each documented below):

- ``rpop_site``: a factory of sites in a temporary folder, declared and
  applied as an administrator would, closed after the test.
- ``capturing_agent``: a delivery agent that keeps every copy in memory,
  registered as the delivery plugin ``capture`` for ``rpop_site``.
- ``pop3_server``: a factory of scriptable POP3 servers on 127.0.0.1, for
  the faults a real server will not produce on demand.
- ``dovecot`` / ``dovecot_factory``: a real Dovecot (POP3, and LMTP on
  request) under a temporary folder.  Without Dovecot installed these fail,
  never skip, and say how to install it.
- ``test_ca`` / ``server_cert``: a test CA and a loopback certificate.
- ``scripted``: a factory of scripted SMTP and LMTP servers.
- ``rpop_log``: everything rpop logs, at every level.

Helpers to import: :mod:`rpopcore.testing` (``remote``, ``delivered``,
``poll_one``, ``Message``...), and the contract tests of
:mod:`rpopcore.testing.contract`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping

import pytest

from rpopcore.testing.capture import CapturingAgent, capture_plugin
from rpopcore.testing.dovecot import DEFAULT_AUTH_MECHANISMS, INSTALL_HINT, Dovecot, missing_dovecot_parts
from rpopcore.testing.scriptable_server import ScriptableServer
from rpopcore.testing.scripted_smtp import scripted  # noqa: F401  (a fixture)
from rpopcore.testing.sites import DEFAULT_SETTINGS, open_site
from rpopcore.testing.tlsca import TestCA

__all__ = [
    "DEFAULT_USERS",
    "SERVER_CERT_NAMES",
    "require_dovecot",
    "test_ca",
    "server_cert",
    "dovecot_factory",
    "dovecot",
    "pop3_server",
    "rpop_log",
    "rpop_site",
    "capturing_agent",
    "scripted",
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


@pytest.fixture
async def pop3_server():
    """A factory for scriptable POP3 servers on 127.0.0.1, stopped after the
    test: ``server = await pop3_server([Message("uid", b"...")], password=...)``
    (see :class:`rpopcore.testing.scriptable_server.ScriptableServer`)."""
    servers = []

    async def start(*args, **kwargs) -> ScriptableServer:
        server = ScriptableServer(*args, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
def rpop_log(caplog):
    """Everything rpop logs, at every level (the CLI's logging set-up may
    have stopped propagation to pytest's handler)."""
    logger = logging.getLogger("rpop")
    saved = logger.propagate
    logger.propagate = True
    with caplog.at_level(1, logger="rpop"):
        yield caplog
    logger.propagate = saved


@pytest.fixture
def capturing_agent() -> CapturingAgent:
    """A delivery agent that keeps every delivered copy in memory
    (``capturing_agent.copies``); a site made by ``rpop_site(...,
    delivery="capture")`` delivers into it."""
    return CapturingAgent()


@pytest.fixture
async def rpop_site(tmp_path: Path, capturing_agent: CapturingAgent):
    """A factory of sites, each in a folder of its own under ``tmp_path``::

        site = await rpop_site(remote(server.host, server.port), plugins=[my_plugin])
        (result,) = await site.poll_once()

    :param declaration: ``[[remote]]``/``[[unified]]`` tables (see
        :func:`rpopcore.testing.remote`); the domain ``example.test`` with
        alice, bob, carol and postmaster is declared for you.
    :param settings: the ``[rpop]`` table's lines (self-polling of loopback
        allowed by default).
    :param delivery: ``None`` for a Maildir under the site (read it with
        :func:`rpopcore.testing.delivered`), ``"capture"`` for
        ``capturing_agent``, or a ``[delivery]`` table's text.
    :param plugins: plugin objects (modules, classes) registered besides
        the installed ones -- the plugin under test before it is installed.
    :param site_tables: more tables for the site file (``[bounces]``...);
        ``relay_plugin = "capture"`` relays into ``capturing_agent``.
    """
    opened = []

    async def make(declaration: str = "", *, settings: str = DEFAULT_SETTINGS, delivery: str | None = None,
                   plugins=(), site_tables: str = ""):
        folder = tmp_path / f"site{len(opened) + 1}"
        extra = [*plugins, capture_plugin(capturing_agent)]
        if delivery == "capture":
            delivery = 'plugin = "capture"'
        site = await open_site(folder, declaration, settings, delivery=delivery, plugins=extra,
                               site_tables=site_tables)
        opened.append(site)
        return site

    yield make
    for site in opened:
        await site.close()

