"""Routing over the declared domains: accounts and aliases are local, in
any case; anything else is not, and a record for it is refused."""

from __future__ import annotations

import pytest

from rpopcore.api import ConfigError
from rpopcore.testing import Message, poll_one, remote


async def test_an_alias_in_any_case_routes_to_its_account(pop3_server, rpop_site, capturing_agent):
    server = await pop3_server([Message("a", b"Subject: a\r\n\r\nbody\r\n")])
    site = await rpop_site(remote(server.host, server.port, owner="AL@Example.TEST"), delivery="capture")

    result = await poll_one(site)

    assert result.error is None
    assert [c.recipient for c in capturing_agent.copies] == ["alice@example.test"]


async def test_an_owner_that_is_no_local_account_is_refused_when_applied(rpop_site):
    with pytest.raises(ConfigError, match="'dave@example.test' is not a local account"):
        await rpop_site(remote("127.0.0.1", 1110, owner="dave@example.test"))
