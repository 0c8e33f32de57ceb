"""Unified records with a special field: its addresses are the recipients,
and the field leaves the delivered copy."""

from __future__ import annotations

from rpopcore.testing import Message, poll_one, unified


async def test_the_special_field_names_the_recipients_and_is_removed(pop3_server, rpop_site, capturing_agent):
    server = await pop3_server([Message("a", b"X-Real-To: <carol@example.test>\r\nTo: alice@example.test\r\n\r\nhi\r\n")])
    site = await rpop_site(unified(server.host, server.port, special_field="X-Real-To"), delivery="capture")

    result = await poll_one(site)

    assert (result.delivered, result.error) == (1, None)
    [copy] = capturing_agent.copies
    assert copy.recipient == "carol@example.test"
    assert b"X-Real-To" not in copy.data
