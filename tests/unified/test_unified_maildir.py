"""Unified Domain-Wide Accounts: a real Dovecot holds the provider's unified
mailbox; rpop distributes its mail into local Maildirs."""

from __future__ import annotations

import email
from pathlib import Path

import pytest

from rpopcore.testing.sites import delivered, open_site
from rpopcore.testing.sites import poll_one as poll

BOX = ("exampletest", "box-secret")


def unified(dovecot, **keys) -> str:
    values = {"account": BOX[0], "password": BOX[1], "host": f"{dovecot.host}:{dovecot.pop3_port}", "leave": False}
    values.update(keys)
    return "[[unified]]\n" + "".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) else v}\n"
        for k, v in values.items()
    ).replace("'", '"')


@pytest.fixture
def provider(dovecot_factory):
    return dovecot_factory(users=dict([BOX]), tls=False)


def message(head: str, body: str = "hello\n") -> bytes:
    return (head.strip() + "\n\n" + body).encode()


def mailbox(folder: Path, user: str) -> list[email.message.Message]:
    return [email.message_from_bytes(m) for m in delivered(folder, user)]


def spooled_reports(folder: Path) -> list[email.message.Message]:
    spool = folder / "bounces"
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(spool.glob("*.eml"))] if spool.exists() else []



async def test_special_field_one_per_recipient_and_comma_lists(provider, tmp_path):
    provider.put(BOX[0], message("""
Return-Path: <sender@far.test>
X-Real-To: alice@example.test
X-Real-To: <al@example.test>
X-Real-To: Bob@Example.TEST, <carol@example.test>
To: everyone@example.test
Subject: real-to
"""))
    site = await open_site(tmp_path, unified(provider, special_field="X-Real-To"))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (1, 1, None)
    for user in ("alice", "bob", "carol"):
        (copy,) = mailbox(tmp_path, user)
        assert copy.get_all("X-Real-To") is None
        assert copy.get_all("Return-Path") == ["<sender@far.test>"]
        assert copy["Delivered-To"] == f"{user}@example.test"
    assert delivered(tmp_path, "postmaster") == []
    assert provider.count(BOX[0]) == 0
    assert spooled_reports(tmp_path) == []
    await site.close()


async def test_unknown_local_account_in_the_special_field_gets_a_dsn(provider, tmp_path):
    provider.put(BOX[0], message("""
Return-Path: <sender@far.test>
X-Real-To: alice@example.test, nobody@example.test
Subject: partly unknown
Message-ID: <m1@far.test>
"""))
    site = await open_site(tmp_path, unified(provider, special_field="X-Real-To"))
    result = await poll(site)
    assert (result.delivered, result.error) == (1, None), "a handled permanent failure completes the message"
    assert len(mailbox(tmp_path, "alice")) == 1
    assert provider.count(BOX[0]) == 0
    (report,) = spooled_reports(tmp_path)
    assert report["To"] == "<sender@far.test>"
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    fields = {k: v for part in status.get_payload() for k, v in part.items()}
    assert fields["Original-Recipient"] == "rfc822; nobody@example.test"
    assert fields["Final-Recipient"] == "rfc822; nobody@example.test"
    assert fields["Action"] == "failed"
    assert fields["Status"] == "5.1.1"
    await site.close()


async def test_no_report_to_the_null_sender_and_foreign_addresses_without_relay(provider, tmp_path):
    provider.put(BOX[0], message("""
X-Real-To: nobody@example.test
Subject: no return path
"""))
    provider.put(BOX[0], message("""
Return-Path: <sender@far.test>
X-Real-To: someone@elsewhere.test, bob@example.test
Subject: foreign
"""))
    site = await open_site(tmp_path, unified(provider, special_field="X-Real-To"))
    result = await poll(site)
    assert (result.retrieved, result.error) == (2, None)
    assert provider.count(BOX[0]) == 0
    (report,) = spooled_reports(tmp_path)
    assert "someone@elsewhere.test" in report.as_string() and "no relay is configured" in report.as_string()
    assert len(mailbox(tmp_path, "bob")) == 1
    await site.close()


async def test_to_cc_bcc_only_local_accounts_never_a_report_else_postmaster(provider, tmp_path):
    provider.put(BOX[0], message("""
Return-Path: <sender@far.test>
To: "Alice A." <alice@example.test>, stranger@far.test
Cc: team: al@example.test, =?utf-8?q?B=C3=B6b?= <bob@example.test>;
Bcc: ghost@example.test
Bcc: carol@example.test
Subject: headers
"""))
    provider.put(BOX[0], message("""
Return-Path: <sender@far.test>
To: list@lists.far.test
Cc: ghost@example.test
Subject: nothing local
"""))
    site = await open_site(tmp_path, unified(provider))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (2, 2, None)
    assert [m["Subject"] for m in mailbox(tmp_path, "alice")] == ["headers"]
    assert [m["Subject"] for m in mailbox(tmp_path, "bob")] == ["headers"]
    assert [m["Subject"] for m in mailbox(tmp_path, "carol")] == ["headers"]
    assert [m["Subject"] for m in mailbox(tmp_path, "postmaster")] == ["nothing local"]
    assert spooled_reports(tmp_path) == []
    await site.close()


@pytest.mark.parametrize("dedupe, copies", [(True, 1), (False, 3)])
async def test_three_stored_copies_reach_each_user_once_with_dedupe(provider, tmp_path, dedupe, copies):
    for _ in range(3):
        provider.put(BOX[0], message("""
Return-Path: <sender@far.test>
To: alice@example.test, bob@example.test, carol@example.test
Subject: three copies
Message-ID: <same@far.test>
"""))
    site = await open_site(tmp_path, unified(provider, dedupe=dedupe))
    result = await poll(site)
    assert (result.retrieved, result.error) == (3, None)
    for user in ("alice", "bob", "carol"):
        assert len(mailbox(tmp_path, user)) == copies
    assert provider.count(BOX[0]) == 0
    await site.close()


async def test_a_temporary_failure_keeps_the_message_and_the_next_poll_does_not_duplicate(provider, tmp_path):
    provider.put(BOX[0], message("""
Return-Path: <sender@far.test>
X-Real-To: alice@example.test, bob@example.test
Subject: bob's disk is broken
"""))
    blocker = tmp_path / "mail" / "example.test" / "bob"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")  # bob's Maildir cannot be created: a temporary failure
    site = await open_site(tmp_path, unified(provider, special_field="X-Real-To"))
    first = await poll(site)
    assert first.error == "delivery-failed"
    assert len(mailbox(tmp_path, "alice")) == 1
    assert provider.count(BOX[0]) == 1, "the message stays on the server"
    assert spooled_reports(tmp_path) == [], "a temporary failure is no reason to report"

    blocker.unlink()
    second = await poll(site)
    assert (second.delivered, second.error) == (1, None)
    assert len(mailbox(tmp_path, "alice")) == 1, "alice is not delivered to again"
    assert len(mailbox(tmp_path, "bob")) == 1
    assert provider.count(BOX[0]) == 0
    await site.close()


async def test_status_lists_unified_records_without_owner(provider, tmp_path):
    site = await open_site(tmp_path, unified(provider, special_field="X-Real-To"))
    (row,) = await site.status()
    assert (row["kind"], row["owner"], row["account"]) == ("unified", None, BOX[0])
    await site.close()
