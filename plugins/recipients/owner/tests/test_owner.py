"""Per-user records: every message goes to the record's owner, whoever its
header fields name."""

from __future__ import annotations

from rpopcore.testing import Message, poll_one, remote


async def test_a_message_to_someone_else_goes_to_the_owner(pop3_server, rpop_site, capturing_agent):
    server = await pop3_server([Message("a", b"Return-Path: <carol@isp.test>\r\nTo: bob@example.test\r\n\r\nhi\r\n")])
    site = await rpop_site(remote(server.host, server.port, owner="al@example.test"), delivery="capture")

    result = await poll_one(site)

    assert (result.delivered, result.error) == (1, None)
    [copy] = capturing_agent.copies
    assert (copy.recipient, copy.sender) == ("alice@example.test", "carol@isp.test")  # the alias routed
