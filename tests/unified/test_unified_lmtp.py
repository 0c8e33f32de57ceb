"""The domain's mail from a real Dovecot POP3 mailbox into a real Dovecot
LMTP store: per-recipient replies, reports for refused recipients."""

from __future__ import annotations

import email

from rpopcore.service import Site
from rpopcore.testing.sites import make_site
from tests.unified.test_unified_maildir import BOX, message, spooled_reports, unified


async def test_distribution_through_dovecot_lmtp_with_a_refused_recipient(dovecot_factory, tmp_path):
    # One Dovecot is both: the provider's unified mailbox and the local store.
    # carol is a local account for rpop but unknown to the store: LMTP says 550.
    dovecot = dovecot_factory(users={BOX[0]: BOX[1], "headerbox": "h", "alice": "a", "bob": "b"}, tls=False, lmtp=True)
    dovecot.put(BOX[0], message("""
Return-Path: <dana@far.test>
X-Real-To: alice@example.test, bob@example.test, carol@example.test
Subject: via lmtp
Message-ID: <lmtp-1@far.test>
""", "line\n.dot\n"))
    dovecot.put("headerbox", message("""
Return-Path: <erin@far.test>
To: al@example.test, stranger@far.test
Subject: headers via lmtp
"""))
    site_file = make_site(tmp_path, unified(dovecot, special_field="X-Real-To")
                          + unified(dovecot, account="headerbox", password="h"))
    site_file.write_text(site_file.read_text().replace('plugin = "maildir"\nroot = "mail"',
                                                       f'plugin = "lmtp"\nhost = "{dovecot.host}"\nport = {dovecot.lmtp_port}'))
    site = await Site.open(site_file)
    await site.apply(tmp_path / "decl.toml")
    first, second = await site.poll_once()
    assert (first.retrieved, first.delivered, first.error) == (1, 1, None), "a handled refusal completes the message"
    assert (second.retrieved, second.delivered, second.error) == (1, 1, None)
    assert dovecot.count(BOX[0]) == 0 and dovecot.count("headerbox") == 0

    alice = [email.message_from_bytes(m) for m in dovecot.messages("alice")]
    bob = [email.message_from_bytes(m) for m in dovecot.messages("bob")]
    assert sorted(m["Subject"] for m in alice) == ["headers via lmtp", "via lmtp"]
    assert [m["Subject"] for m in bob] == ["via lmtp"]
    copy = next(m for m in alice if m["Subject"] == "via lmtp")
    assert copy.get_all("X-Real-To") is None
    assert copy.get_all("Return-Path") == ["<dana@far.test>"]
    assert copy.get_payload() == "line\n.dot\n"

    (report,) = spooled_reports(tmp_path)
    assert report["To"] == "<dana@far.test>"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    fields = {k: v for part in status.get_payload() for k, v in part.items()}
    assert fields["Final-Recipient"] == "rfc822; carol@example.test"
    assert fields["Status"].startswith("5.")
    await site.close()
