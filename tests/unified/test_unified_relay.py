"""A unified account with an outbound relay: foreign addresses in the special
field are relayed, and reports go through the relay instead of the spool.
The relay is a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email

import pytest
from aiosmtpd.controller import Controller

from rpopcore.testing.sites import delivered, make_site
from tests.unified.test_unified_maildir import BOX, message, unified


class Recorder:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def relay(unused_tcp_port):
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=unused_tcp_port)
    controller.start()
    yield recorder, unused_tcp_port
    controller.stop()


async def test_foreign_recipients_are_relayed_and_reports_go_through_the_relay(dovecot_factory, relay, tmp_path):
    from rpopcore.service import Site

    recorder, port = relay
    provider = dovecot_factory(users=dict([BOX]), tls=False)
    provider.put(BOX[0], message("""
Return-Path: <dana@far.test>
X-Real-To: alice@example.test, partner@elsewhere.test, nobody@example.test
Subject: mixed
"""))
    site_file = make_site(tmp_path, unified(provider, special_field="X-Real-To"))
    site_file.write_text(site_file.read_text() + f'\n[bounces]\nrelay = "127.0.0.1:{port}"\n')
    site = await Site.open(site_file)
    await site.apply(tmp_path / "decl.toml")
    (result,) = await site.poll_once()
    assert (result.delivered, result.error) == (1, None)
    assert len(delivered(tmp_path, "alice")) == 1
    assert provider.count(BOX[0]) == 0
    assert not (tmp_path / "bounces").exists(), "with a relay nothing is spooled"

    relayed = [e for e in recorder.envelopes if e[1] == ["partner@elsewhere.test"]]
    (sender, _, content) = relayed[0]
    assert sender == "dana@far.test"
    assert b"X-Real-To" not in content and b"Subject: mixed" in content

    reports = [e for e in recorder.envelopes if e[1] == ["dana@far.test"]]
    (sender, _, content) = reports[0]
    assert sender == "<>", "a report is sent from the null sender (aiosmtpd shows MAIL FROM:<> as <>)"
    report = email.message_from_bytes(content)
    assert report.get_content_type() == "multipart/report"
    assert "nobody@example.test" in report.as_string() and "Status: 5.1.1" in report.as_string()
    assert len(recorder.envelopes) == 2
    await site.close()
