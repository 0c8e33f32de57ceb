"""Switching from fetchmail, getmail6 or mpop, as a user of each does it:
the old tool has polled a real Dovecot mailbox and left the mail there;
one import (with the tool's UID file) and one apply later, rpop's first
poll retrieves only the mail that arrived since -- nothing twice."""

from __future__ import annotations

import email
import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import json_out, run_rpop

PASSWORD = "alice-secret"


def message(subject: str) -> bytes:
    return f"From: sender@isp.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


def maildir(path: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)  # the tools refuse rc files others can read
    return path


def fetchmail(server, ca_file, work: Path, mail: Path):
    rc = private(work / "fetchmailrc", f"""\
set no bouncemail
poll Dovecot via 127.0.0.1 service {server.pop3_port} proto pop3 auth password
  user "alice" there with password "{PASSWORD}" is alice here
  keep sslproto '' mda "/usr/bin/safecat {mail}/tmp {mail}/new"
""")
    ids = work / "fetchids"
    return rc, ids, ["fetchmail", "-f", str(rc), "--nosyslog", "--idfile", str(ids)]


def getmail(server, ca_file, work: Path, mail: Path):
    rc = private(work / "getmailrc", f"""\
[retriever]
type = SimplePOP3SSLRetriever
server = 127.0.0.1
port = {server.pop3s_port}
username = alice
password = {PASSWORD}
ca_certs = {ca_file}

[destination]
type = MDA_external
path = /usr/bin/safecat
arguments = ("{mail}/tmp", "{mail}/new")
allow_root_commands = true

[options]
read_all = false
delete = false
""")
    state = work / "getmail"
    state.mkdir()
    uids = state / f"oldmail-127.0.0.1-{server.pop3s_port}-alice"
    return rc, uids, ["getmail", "--getmaildir", str(state), "--rcfile", str(rc)]


def mpop(server, ca_file, work: Path, mail: Path):
    rc = private(work / "mpoprc", f"""\
defaults
tls on
tls_trust_file {ca_file}
keep on
uidls_file {work}/uidls/%U_at_%H

account dovecot
host 127.0.0.1
port {server.pop3_port}
user alice
password {PASSWORD}
delivery maildir {mail}
""")
    return rc, work / "uidls" / "alice_at_127.0.0.1", ["mpop", "-C", str(rc), "-q", "-a"]


TOOLS = {"fetchmailrc": fetchmail, "getmailrc": getmail, "mpoprc": mpop}


def subjects(folder: Path) -> set[str]:
    return {email.message_from_bytes(p.read_bytes())["Subject"] for p in (folder / "new").iterdir()}


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_mail_the_old_tool_left_on_the_server_is_not_retrieved_again(kind, dovecot_factory, test_ca, tmp_path):
    server = dovecot_factory(users={"alice": PASSWORD}, tls=True)
    server.put_many("alice", [message(f"old {n}") for n in range(3)])
    old_mail = maildir(tmp_path / "old-tool-mail")
    rc, uid_file, argv = TOOLS[kind](server, test_ca.ca_pem_path, tmp_path, old_mail)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}
    ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert subjects(old_mail) == {"old 0", "old 1", "old 2"}, (ran.stdout, ran.stderr)
    assert server.count("alice") == 3  # the old tool kept the mail on the server

    server.put_many("alice", [message("new 0"), message("new 1")])
    assert run_rpop("init", tmp_path / "site").returncode == 0
    site = tmp_path / "site" / "rpop.toml"
    # The server is on this machine; the import keeps the site's settings.
    (tmp_path / "settings.toml").write_text("[rpop]\nallow_self_poll = true\n")
    assert run_rpop("-c", site, "apply", tmp_path / "settings.toml").returncode == 0
    imported = run_rpop("-c", site, "import", kind, rc, "--uids", uid_file, "--domain", "example.test",
                        "--owner", "alice")
    assert imported.returncode == 0, imported.stderr
    assert "stored 3 UIDs of 1 mailbox" in imported.stderr
    declaration = tmp_path / "accounts.toml"
    declaration.write_text(imported.stdout)
    applied = run_rpop("-c", site, "apply", declaration)
    assert applied.returncode == 0, applied.stderr

    polled = run_rpop("-c", site, "poll", "--once", "--json")
    assert polled.returncode == 0, polled.stderr
    assert [(r["retrieved"], r["error"]) for r in json_out(polled)] == [(2, None)]
    assert subjects(tmp_path / "site" / "mail" / "example.test" / "alice") == {"new 0", "new 1"}
    assert server.count("alice") == 5  # each tool kept the mail, and so does the imported record
