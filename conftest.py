"""Fixtures shared by every test, under tests/ and beside each plugin: real
servers (Dovecot, the test CA, an OAuth provider) and the project's
scriptable POP3 server."""

from __future__ import annotations

import logging

import pytest

from rpopcore.pop3.scriptable_server import ScriptableServer
from tests.support.fixtures import *  # noqa: F401,F403  (dovecot, dovecot_factory, test_ca, server_cert)
from tests.support.oauth2_provider import oauth2_provider  # noqa: F401
from tests.support.scripted_smtp import scripted  # noqa: F401  (scripted SMTP/LMTP servers)


@pytest.fixture
async def pop3_server():
    """A factory for scriptable POP3 servers on 127.0.0.1, stopped after the test."""
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
