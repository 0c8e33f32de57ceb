"""A domain's mail, collected in one real Dovecot POP3 mailbox, reaches every
local user by both methods through each of the four delivery plugins."""

from __future__ import annotations

import email
import sys
import textwrap

import pytest
from aiosmtpd.controller import Controller

from rpopcore.service import Site
from rpopcore.testing.sites import DOMAIN, make_site
from tests.unified.test_unified_maildir import message, unified

SPECIAL = ("special", "s-pw")
HEADERS = ("headers", "h-pw")
USERS = ("alice", "bob", "carol")

MDA = textwrap.dedent("""\
    import os, sys
    folder = os.path.join(sys.argv[1], sys.argv[2])
    os.makedirs(folder, exist_ok=True)
    data = sys.stdin.buffer.read()
    with open(os.path.join(folder, str(len(os.listdir(folder)))), "wb") as f:
        f.write(data)
""")


class Recorder:
    def __init__(self):
        self.by_user = {}

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            self.by_user.setdefault(rcpt.split("@")[0], []).append(envelope.content)
        return "250 OK"


def seed(dovecot):
    dovecot.put(SPECIAL[0], message("""
Return-Path: <dana@far.test>
X-Real-To: alice@example.test
X-Real-To: sales@example.test, carol@example.test
To: all@example.test
Subject: by special field
"""))
    dovecot.put(HEADERS[0], message("""
Return-Path: <erin@far.test>
To: Alice <alice@example.test>, sales@example.test
Cc: carol@example.test, stranger@far.test
Subject: by headers
"""))


@pytest.mark.parametrize("plugin", ["maildir", "lmtp", "smtp", "pipe"])
async def test_both_methods_through_each_delivery_plugin(plugin, dovecot_factory, tmp_path, unused_tcp_port, monkeypatch):
    monkeypatch.setattr("rpopcore.testing.sites.DOMAIN", DOMAIN.replace('aliases = { al = "alice" }', 'aliases = { al = "alice", sales = "bob" }'))
    users = {SPECIAL[0]: SPECIAL[1], HEADERS[0]: HEADERS[1], **{u: u for u in USERS}}
    dovecot = dovecot_factory(users=users, tls=False, lmtp=True)
    seed(dovecot)
    site_file = make_site(tmp_path, unified(dovecot, account=SPECIAL[0], password=SPECIAL[1], special_field="X-Real-To")
                          + unified(dovecot, account=HEADERS[0], password=HEADERS[1]))
    controller = None
    if plugin == "lmtp":
        table = f'plugin = "lmtp"\nhost = "{dovecot.host}"\nport = {dovecot.lmtp_port}'
    elif plugin == "smtp":
        recorder = Recorder()
        controller = Controller(recorder, hostname="127.0.0.1", port=unused_tcp_port)
        controller.start()
        table = f'plugin = "smtp"\nhost = "127.0.0.1"\nport = {unused_tcp_port}'
    elif plugin == "pipe":
        (tmp_path / "mda.py").write_text(MDA)
        (tmp_path / "piped").mkdir()
        command = [sys.executable, str(tmp_path / "mda.py"), str(tmp_path / "piped"), "{localpart}"]
        table = 'plugin = "pipe"\ncommand = [' + ", ".join(f'"{c}"' for c in command) + "]"
    else:
        table = 'plugin = "maildir"\nroot = "mail"'
    site_file.write_text(site_file.read_text().replace('plugin = "maildir"\nroot = "mail"', table))
    try:
        site = await Site.open(site_file)
        await site.apply(tmp_path / "decl.toml")
        results = await site.poll_once()
        await site.close()
    finally:
        if controller is not None:
            controller.stop()
    assert [(r.retrieved, r.delivered, r.error) for r in results] == [(1, 1, None), (1, 1, None)]
    assert dovecot.count(SPECIAL[0]) == 0 and dovecot.count(HEADERS[0]) == 0

    def received(user):
        if plugin == "lmtp":
            return dovecot.messages(user)
        if plugin == "smtp":
            return recorder.by_user.get(user, [])
        if plugin == "pipe":
            folder = tmp_path / "piped" / user
            return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.exists() else []
        folder = tmp_path / "mail" / "example.test" / user / "new"
        return [p.read_bytes() for p in folder.iterdir()] if folder.exists() else []

    for user in USERS:
        copies = [email.message_from_bytes(m) for m in received(user)]
        assert sorted(m["Subject"] for m in copies) == ["by headers", "by special field"], (user, plugin)
        for copy in copies:
            assert copy.get_all("X-Real-To") is None
            assert copy.get_all("Return-Path") in (None, ["<dana@far.test>"], ["<erin@far.test>"])
    assert received("postmaster") == []
    assert not (tmp_path / "bounces").exists()
