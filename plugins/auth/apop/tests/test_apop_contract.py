"""APOP passes the contract of every authentication mechanism against a
server whose greeting carries a timestamp, and never sends the password."""

from __future__ import annotations

import pytest

from rpopcore.testing import Message, poll_one, remote
from rpopcore.testing.contract import AuthMechanismContract, LoginServer


@pytest.fixture
async def apop_server(pop3_server):
    return await pop3_server([Message("a", b"Subject: a\r\n\r\nbody\r\n")], user="alice", password="apop-pw", apop=True)


class TestApop(AuthMechanismContract):
    @pytest.fixture
    def mechanism_name(self):
        return "apop"

    @pytest.fixture
    def login_server(self, apop_server):
        return LoginServer(apop_server.host, apop_server.port, "alice", "apop-pw")


async def test_with_apop_true_the_password_never_crosses_the_wire(apop_server, rpop_site):
    site = await rpop_site(remote(apop_server.host, apop_server.port, account="alice", password="apop-pw", apop=True),
                           delivery="capture")
    result = await poll_one(site)
    assert (result.delivered, result.error) == (1, None)
    commands = [line for session in apop_server.sessions for line in session.commands]
    assert any(c.startswith("APOP alice ") for c in commands)
    assert not any("apop-pw" in c for c in commands)
