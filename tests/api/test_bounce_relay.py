"""The bounce relay is any delivery plugin: ``[bounces] relay_plugin``
(``smtp`` unless said otherwise) with ``[bounces.relay_options]``; a missing
one is named with the distribution that provides it."""

from __future__ import annotations

import pytest

from rpopcore.api import ConfigError
from rpopcore.testing import Message, poll_one, unified

REPORTED = Message("a", b"Return-Path: <carol@isp.test>\r\nX-Real-To: <dave@example.test>\r\nSubject: s\r\n\r\nhi\r\n")


async def test_reports_go_through_the_named_relay_plugin_not_the_spool(pop3_server, rpop_site, capturing_agent,
                                                                       tmp_path):
    server = await pop3_server([REPORTED])
    site = await rpop_site(unified(server.host, server.port, special_field="X-Real-To"),
                           site_tables='[bounces]\nrelay_plugin = "capture"\n[bounces.relay_options]\nanything = 1\n')

    result = await poll_one(site)

    assert result.error is None
    [report] = capturing_agent.copies
    assert (report.recipient, report.sender) == ("carol@isp.test", "")
    assert b"Final-Recipient: rfc822; dave@example.test" in report.data
    assert not (tmp_path / "site1" / "bounces").exists()


async def test_without_a_relay_reports_are_spooled(pop3_server, rpop_site, capturing_agent, tmp_path):
    server = await pop3_server([REPORTED])
    site = await rpop_site(unified(server.host, server.port, special_field="X-Real-To"))

    assert (await poll_one(site)).error is None
    assert capturing_agent.copies == []
    assert len(list((tmp_path / "site1" / "bounces").glob("*.eml"))) == 1


async def test_a_relay_plugin_not_installed_is_named_with_its_distribution(rpop_site, monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "sqlite,maildir")
    with pytest.raises(ConfigError, match=r"\[bounces\] key 'relay_plugin': no installed plugin provides 'smtp'.*"
                                          r"pip install rpop-delivery-smtp"):
        await rpop_site("", site_tables='[bounces]\nrelay = "127.0.0.1:25"\n')


async def test_relay_options_must_be_a_table(rpop_site):
    with pytest.raises(ConfigError, match=r"\[bounces\] key 'relay_options': expected a table"):
        await rpop_site("", site_tables='[bounces]\nrelay_options = "smtp.example.test"\n')
