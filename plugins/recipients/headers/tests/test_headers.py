"""Unified records without a special field: To, Cc and Bcc name the local
recipients; anyone else is passed over; nobody local means the postmaster."""

from __future__ import annotations

from rpopcore.testing import Message, poll_one, unified


async def test_local_addresses_in_to_and_cc_get_a_copy_and_others_none(pop3_server, rpop_site, capturing_agent):
    server = await pop3_server([
        Message("a", b"To: Alice <alice@example.test>, someone@far.test\r\nCc: bob@example.test\r\n\r\nhi\r\n"),
        Message("b", b"To: nobody@far.test\r\n\r\nfor no one here\r\n"),
    ])
    site = await rpop_site(unified(server.host, server.port), delivery="capture")

    result = await poll_one(site)

    assert result.error is None
    assert sorted(c.recipient for c in capturing_agent.copies) == [
        "alice@example.test", "bob@example.test", "postmaster@example.test"]
