"""Each tool's rc file, read as its users write it: the tools' own
documented examples and the options people combine.  What matters is the
record an administrator would have written by hand, and that every option
without an rpop equivalent is named rather than dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpopcore import errors
from rpopcore.importers import fetchmail, getmail, mpop
from rpopcore.importers.model import LocalNames

EXAMPLES = Path(__file__).parent / "examples"
LOCAL = LocalNames(domain="example.org", default_owner="joe@example.org")


def by_host(imported):
    return {(m.account, m.host): m for m in imported.mailboxes}


def noted(imported) -> str:
    return "\n".join(note.line() for note in imported.all_notes())


def write(tmp_path, name, text) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- fetchmail ---------------------------------------------------------------


def test_fetchmail_manual_examples_become_per_user_and_domain_records():
    imported = fetchmail.parse(EXAMPLES / "fetchmailrc.manpage", LOCAL)
    boxes = by_host(imported)
    assert set(boxes) == {
        ("jsmith", "pop.provider.net"), ("jsmith", "mail.provider.net"), ("jsmith", "pop2.provider.net:3111"),
        ("jones", "pop2.provider.net:3111"), ("maildrop", "pop3.provider.net"), ("maildrop", "pop4.provider.net"),
    }
    plain = boxes["jsmith", "pop.provider.net"]
    assert (plain.owner, plain.password, plain.leave) == ("jsmith@example.org", "secret1", False)
    assert boxes["jsmith", "mail.provider.net"].password == "4u but u cannot krak this"
    assert boxes["jsmith", "mail.provider.net"].owner == "jws@example.org"
    # two users of one server entry, each with their own local name and keep
    assert boxes["jsmith", "pop2.provider.net:3111"].owner == "smith@example.org"
    assert boxes["jones", "pop2.provider.net:3111"].leave is True
    assert boxes["jsmith", "pop2.provider.net:3111"].leave is False
    # multidrop: 'hurkle'='happy' maps a server name to the local 'happy'
    mapped = boxes["maildrop", "pop3.provider.net"]
    assert mapped.unified and mapped.accounts == ("golux", "happy", "snark") and mapped.domains == ("example.org",)
    wildcard = boxes["maildrop", "pop4.provider.net"]
    assert wildcard.unified and wildcard.domains == ("loonytoons.org", "toons.org")
    assert wildcard.special_field == "X-Envelope-To"
    notes = noted(imported)
    assert "protocol pop2" in notes and "protocol imap" in notes  # not POP3: named, not imported
    assert "'to * here'" in notes


def test_fetchmail_defaults_entry_fills_in_each_poll():
    boxes = by_host(fetchmail.parse(EXAMPLES / "fetchmailrc.defaults", LOCAL))
    assert boxes["jsmith", "pop.provider.net"].password == "secret1"
    assert boxes["jjsmith", "mail.provider.net"].password == "secret2"


def test_fetchmail_debian_example_has_no_poll_and_imports_nothing_silently():
    imported = fetchmail.parse(EXAMPLES / "debian-fetchmailrc.example", LOCAL)
    assert imported.mailboxes == ()
    assert "'set no bouncemail'" in noted(imported)


def test_fetchmail_tls_keep_daemon_and_what_has_no_equivalent(tmp_path):
    rc = write(tmp_path, "fetchmailrc", """\
set daemon 300
set logfile "/var/log/fetchmail.log"
poll pop.isp.example via "POP.ISP.example." proto pop3 port 995 timeout 45 interval 2
  user 'alice.smith@isp.example' there with password "p\\"w\\x41" is alice here
  ssl sslcertck sslcommonname pop.isp.example fetchlimit 50 keep
  mda "/usr/lib/dovecot/dovecot-lda -f %F -d %T"
poll legacy.example proto apop user bob pass pw is bob here no sslcertck sslproto ''
  smtphost mx.example/2525
""")
    imported = fetchmail.parse(rc, LOCAL)
    alice, bob = imported.mailboxes
    assert (alice.account, alice.host, alice.password) == ("alice.smith@isp.example", "POP.ISP.example.:995", 'p"wA')
    assert alice.mailbox == "alice.smith@isp.example@pop.isp.example"  # UIDs are kept under this
    assert (alice.tls, alice.tls_verify, alice.server_name, alice.leave) == (True, True, "pop.isp.example", True)
    assert (alice.timeout, alice.poll_every) == (45, 600)
    assert (bob.apop, bob.tls, bob.starttls, bob.tls_verify, bob.leave) == (True, False, "never", False, False)
    pipe, smtp = imported.deliveries
    assert (pipe.plugin, pipe.options) == ("pipe", {"command": ["/usr/lib/dovecot/dovecot-lda", "-f", "{sender}",
                                                                "-d", "{recipient}"]})
    assert (smtp.plugin, smtp.options) == ("smtp", {"host": "mx.example", "port": 2525})
    notes = noted(imported)
    assert "fetchmailrc:5: 'fetchlimit 50'" in notes
    assert "fetchmailrc:2: 'set logfile /var/log/fetchmail.log'" in notes


def test_fetchmail_lmtp_delivery_and_shell_mda_is_named(tmp_path):
    rc = write(tmp_path, "rc", 'poll a.example user u pass p is u here smtphost /run/dovecot/lmtp lmtp\n'
                               'poll b.example user u pass p is u here mda "procmail -d %T | logger"\n')
    lmtp, shell = fetchmail.parse(rc, LOCAL).deliveries
    assert (lmtp.plugin, lmtp.options) == ("lmtp", {"socket": "/run/dovecot/lmtp"})
    assert shell.plugin == "" and "without a shell" in shell.notes[0].why


@pytest.mark.parametrize("text, message", [
    ('poll a.example user "u pass p\n', "rc:1: a string opened with \" is never closed"),
    ("poll a.example user u pasword p\n", "rc:1: 'pasword' is not a fetchmail option"),
    ("user u pass p\n", "rc:1: 'user' outside a poll entry"),
    ("set daemon often\npoll a user u\n", "rc:1: set daemon 'often' is not a number"),
])
def test_fetchmail_mistakes_name_file_and_line(tmp_path, text, message):
    with pytest.raises(errors.ConfigError, match=message.replace("(", r"\(")):
        fetchmail.parse(write(tmp_path, "rc", text), LOCAL)


def test_fetchids_lines_are_grouped_by_mailbox(tmp_path):
    ids = write(tmp_path, ".fetchids", "alice@pop.isp.example 00a1\nalice@pop.isp.example 00a2\n"
                                       "a@b.example@POP.ISP.example 77\n")
    lists = {u.mailbox: set(u.uids) for u in fetchmail.read_uids(ids)}
    assert lists == {"alice@pop.isp.example": {"00a1", "00a2"}, "a@b.example@pop.isp.example": {"77"}}


# --- getmail ---------------------------------------------------------------


def test_getmail_example_1_maildir_is_named_not_dropped():
    imported = getmail.parse(EXAMPLES / "getmailrc.example1", LOCAL)
    (box,) = imported.mailboxes
    assert (box.account, box.host, box.password, box.owner, box.leave) == (
        "jeff.plotzky", "pop.example.net", "mailpassword", "joe@example.org", True)
    assert box.starttls == "never"  # getmail's POP3 retriever never starts TLS
    assert "type = Maildir" in noted(imported)


def test_getmail_example_7_external_mda_becomes_pipe():
    (delivery,) = getmail.parse(EXAMPLES / "getmailrc.example7", LOCAL).deliveries
    assert delivery.plugin == "pipe"
    assert delivery.options["command"] == ["/usr/local/bin/my-mda", "--message-from-stdin", "--scan-message",
                                           "--to-maildir", "~jeffp/Maildir/"]


def test_getmail_example_8_multidrop_becomes_unified_with_the_sorted_addresses():
    imported = getmail.parse(EXAMPLES / "getmailrc.example8", LOCAL)
    (box,) = imported.mailboxes
    assert box.unified and box.tls and box.special_field == "delivered-to"
    assert box.domains == ("company.example.net",)
    assert box.accounts == ("c.fellowes", "jeffk", "martinh")
    assert "sam\\D*@company.example.net" in noted(imported)  # a pattern, not an address: named


def test_getmail_imap_and_password_command_are_named(tmp_path):
    imported = getmail.parse(EXAMPLES / "getmailrc.example0", LOCAL)
    assert imported.mailboxes == () and "SimpleIMAPSSLRetriever" in noted(imported)
    rc = write(tmp_path, "getmailrc", "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = pop.isp.example\n"
                                      "username = u\npassword_command = ('pass', 'isp')\nport = 1995\n"
                                      "[destination]\ntype = MDA_lmtp\nhost = 127.0.0.1\nport = 2424\n"
                                      "[options]\ndelete = true\nread_all = false\nmax_message_size = 10\n")
    imported = getmail.parse(rc, LOCAL)
    (box,) = imported.mailboxes
    assert (box.host, box.tls, box.leave, box.password) == ("pop.isp.example:1995", True, False, None)
    assert imported.deliveries[0].options == {"host": "127.0.0.1", "port": 2424}
    notes = noted(imported)
    for option in ("password_command", "read_all = false", "max_message_size = 10"):
        assert option in notes


def test_getmail_oldmail_file(tmp_path):
    old = tmp_path / "oldmail-pop.isp-example.net-995-jeff.plotzky"
    old.write_bytes(b"UID1\x001700000000\nUID2\x001700000001\n")
    (uids,) = getmail.read_uids(old)
    assert (uids.mailbox, set(uids.uids)) == ("jeff.plotzky@pop.isp-example.net", {"UID1", "UID2"})
    with pytest.raises(errors.ConfigError, match="oldmail-SERVER-PORT-USERNAME"):
        getmail.read_uids(write(tmp_path, "uids.txt", "x"))


# --- mpop --------------------------------------------------------------------


def test_mpop_documented_example_inherits_accounts():
    imported = mpop.parse(EXAMPLES / "mpoprc.example", LOCAL)
    boxes = {m.label: m for m in imported.mailboxes}
    assert set(boxes) == {"freemail", "freemail2", "company", "default"}
    assert (boxes["freemail"].account, boxes["freemail"].host) == ("joe.smith", "pop.freemail.example")
    assert (boxes["freemail2"].account, boxes["freemail2"].host) == ("joey", "pop.freemail.example")
    # 'tls on' without 'tls_starttls off' is STARTTLS, required
    assert (boxes["freemail"].tls, boxes["freemail"].starttls) == (False, "required")
    assert boxes["freemail"].leave is False  # mpop deletes unless 'keep on'
    notes = noted(imported)
    assert "passwordeval gpg2" in notes and "filter" in notes and "delivery mbox" in notes


def test_mpop_implicit_tls_keep_and_trust_file(tmp_path):
    rc = write(tmp_path, "mpoprc", "defaults\nkeep on\ntls on\ntls_starttls off\ntls_trust_file /etc/ca.pem\n"
                                   "account isp\nhost pop.isp.example\nuser \"a b\"\npassword \"s\\\"x\"\n"
                                   "auth cram-md5\ntimeout 20\ndelivery mda /usr/bin/procmail -f %F\n")
    imported = mpop.parse(rc, LOCAL)
    (box,) = imported.mailboxes
    assert (box.tls, box.leave, box.ca_file, box.account, box.password, box.auth, box.timeout) == (
        True, True, "/etc/ca.pem", "a b", 's"x', "cram-md5", 20)
    assert imported.deliveries[0].options == {"command": ["/usr/bin/procmail", "-f", "{sender}"]}


def test_mpop_uidls_file_lists(tmp_path):
    uidls = write(tmp_path, "uidls", "# generated by mpop\n 2 pop.isp.example joe smith\nA1\nA2\n 0 other.example x\n")
    lists = {u.mailbox: set(u.uids) for u in mpop.read_uids(uidls)}
    assert lists == {"joe smith@pop.isp.example": {"A1", "A2"}, "x@other.example": set()}
    with pytest.raises(errors.ConfigError, match="uidls:1: the list says 3 UIDs and 1 follow"):
        mpop.read_uids(write(tmp_path, "uidls", " 3 h u\nA\n"))


def test_mpop_unknown_command_names_line(tmp_path):
    with pytest.raises(errors.ConfigError, match="mpoprc:2: 'hots' is not an mpop command"):
        mpop.parse(write(tmp_path, "mpoprc", "account a\nhots pop.example\n"), LOCAL)
