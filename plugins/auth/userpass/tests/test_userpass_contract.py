"""USER/PASS passes the contract of every authentication mechanism."""

from __future__ import annotations

import pytest

from rpopcore.testing import Message
from rpopcore.testing.contract import AuthMechanismContract, LoginServer


class TestUserPass(AuthMechanismContract):
    @pytest.fixture
    def mechanism_name(self):
        return "userpass"

    @pytest.fixture
    async def login_server(self, pop3_server):
        server = await pop3_server([Message("a", b"Subject: a\r\n\r\nbody\r\n")], user="alice", password="pw 1")
        return LoginServer(server.host, server.port, "alice", "pw 1")

    def test_it_says_the_password_goes_in_clear(self, mechanism_name, mechanism_plugins):
        assert self._mechanism(mechanism_name, mechanism_plugins).sends_password_in_clear is True
