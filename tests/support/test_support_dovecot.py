"""Tests of the Dovecot and TLS test helpers, with the standard library's
poplib/ssl/smtplib as the client (rpop's own client is tested elsewhere)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import poplib
import re
import smtplib
import socket
import ssl
import time

import pytest
from cryptography import x509

from rpopcore.testing.dovecot import Dovecot, DovecotStartError, _group_alive, free_port

# The fixtures (test_ca, server_cert, dovecot_factory, dovecot) come from
# tests/conftest.py, which star-imports rpopcore.testing.plugin.
from rpopcore.testing.plugin import DEFAULT_USERS, require_dovecot
from rpopcore.testing.tlsca import make_self_signed

MESSAGE = b"From: x@example.org\nSubject: hello\n\nline one\nline two\n"


POOL = {f"user{i}": f"pw {i}" for i in range(1, 41)}


@pytest.fixture(scope="module")
def server(server_cert):
    """One Dovecot with TLS and LMTP for most of this module."""
    require_dovecot(lmtp=True)
    with Dovecot(users=POOL, tls=server_cert, lmtp=True) as d:
        yield d


_pool = iter(POOL.items())


@pytest.fixture
def user(server):
    """A user (name, password) of ``server`` not used by another test.

    (Users are all given at start: adding one to a running Dovecot costs up
    to a second, see ``Dovecot.set_user``.)"""
    name, password = next(_pool)
    assert server.count(name) == 0
    return name, password


def ca_context(test_ca) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(test_ca.ca_pem_path))


def login(server, user, *, tls=None) -> poplib.POP3:
    p = poplib.POP3(server.host, server.pop3_port, timeout=10)
    if tls is not None:
        p.stls(tls)
    p.user(user[0])
    p.pass_(user[1])
    return p


def raw_capa(sock_file) -> list[bytes]:
    sock_file.write(b"CAPA\r\n")
    sock_file.flush()
    assert sock_file.readline().startswith(b"+OK")
    lines = []
    while (line := sock_file.readline()) != b".\r\n":
        assert line, "connection closed in CAPA"
        lines.append(line.rstrip(b"\r\n"))
    return lines


# --- greeting, CAPA, logins --------------------------------------------------


def test_starts_fast_and_greets_with_apop_timestamp(server):
    assert server.running
    assert server.host == "127.0.0.1"
    assert server.start_seconds < 5
    with socket.create_connection((server.host, server.pop3_port), timeout=5) as s:
        greeting = s.makefile("rb").readline()
    assert re.fullmatch(rb"\+OK .*<[^<>@]+@[^<>]+>\r\n", greeting), greeting


def test_capa_before_and_after_login(server, user, test_ca):
    with socket.create_connection((server.host, server.pop3_port), timeout=5) as s:
        f = s.makefile("rwb")
        f.readline()
        before = raw_capa(f)
    assert before == [
        b"CAPA", b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING",
        b"AUTH-RESP-CODE", b"STLS", b"USER", b"SASL PLAIN LOGIN CRAM-MD5",
    ]
    p = login(server, user)
    try:
        after = p.capa()
    finally:
        p.quit()
    assert set(after) == {"CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"}


def test_user_pass_and_retr(server, user):
    name = server.put(user[0], MESSAGE)
    assert server.names(user[0]) == [name]
    p = login(server, user)
    try:
        assert p.stat() == (1, len(MESSAGE.replace(b"\n", b"\r\n")))
        _resp, lines, _octets = p.retr(1)
    finally:
        p.quit()
    assert b"\n".join(lines) + b"\n" == MESSAGE


def test_wrong_password_is_refused_quickly(server, user):
    p = poplib.POP3(server.host, server.pop3_port, timeout=10)
    try:
        p.user(user[0])
        start = time.monotonic()
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p.pass_("wrong")
        assert time.monotonic() - start < 1.5  # no 2 s auth_failure_delay
    finally:
        p.close()


def test_apop(server, user):
    server.put(user[0], MESSAGE)
    p = poplib.POP3(server.host, server.pop3_port, timeout=10)
    try:
        assert p.apop(user[0], user[1]).startswith(b"+OK")
        assert p.stat()[0] == 1
    finally:
        p.quit()
    p = poplib.POP3(server.host, server.pop3_port, timeout=10)
    try:
        with pytest.raises(poplib.error_proto):
            p.apop(user[0], "wrong")
    finally:
        p.close()


def test_cram_md5(server, user):
    with socket.create_connection((server.host, server.pop3_port), timeout=5) as s:
        f = s.makefile("rwb")
        f.readline()
        f.write(b"AUTH CRAM-MD5\r\n")
        f.flush()
        challenge = f.readline()
        assert challenge.startswith(b"+ ")
        digest = hmac.new(
            user[1].encode(), base64.b64decode(challenge[2:].strip()), hashlib.md5
        ).hexdigest()
        f.write(base64.b64encode(f"{user[0]} {digest}".encode()) + b"\r\n")
        f.flush()
        assert f.readline().startswith(b"+OK")


def test_pipelined_commands(server, user):
    server.put_many(user[0], [MESSAGE, MESSAGE])
    with socket.create_connection((server.host, server.pop3_port), timeout=5) as s:
        f = s.makefile("rwb")
        f.readline()
        f.write(f"USER {user[0]}\r\nPASS {user[1]}\r\nSTAT\r\nNOOP\r\nQUIT\r\n".encode())
        f.flush()
        replies = [f.readline() for _ in range(5)]
    assert [r[:3] for r in replies] == [b"+OK"] * 5
    assert replies[2].startswith(b"+OK 2 ")


# --- UIDL ------------------------------------------------------------------


def test_uidl_format_and_stable_across_sessions(server, user):
    server.put_many(user[0], [MESSAGE + b"1\n", MESSAGE + b"2\n"])
    p = login(server, user)
    try:
        first = p.uidl()[1]
        _resp, lines, _octets = p.retr(1)  # marks it seen: file moves to cur/
    finally:
        p.quit()
    assert lines[-1] == b"1"
    server.put(user[0], MESSAGE + b"3\n")
    p = login(server, user)
    try:
        second = p.uidl()[1]
    finally:
        p.quit()
    assert len(first) == 2 and len(second) == 3
    assert second[:2] == first
    uids = [line.split()[1] for line in second]
    for u in uids:
        # %08Xu%08Xv: Dovecot 2.3 prints %X in lowercase
        assert re.fullmatch(rb"[0-9a-f]{16}", u), u
    assert [int(u[:8], 16) for u in uids] == [1, 2, 3]
    assert len({u[8:] for u in uids}) == 1  # one UIDVALIDITY


# --- TLS ---------------------------------------------------------------------


def test_stls_verifies_with_test_ca(server, user, test_ca):
    p = poplib.POP3(server.host, server.pop3_port, timeout=10)
    try:
        p.stls(ca_context(test_ca))
        assert p.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert "STLS" not in p.capa()
        p.user(user[0])
        p.pass_(user[1])
        assert p.stat() == (0, 0)
    finally:
        p.quit()


def test_pop3s_verifies_with_test_ca(server, user, test_ca):
    assert server.pop3s_port not in (None, server.pop3_port)
    p = poplib.POP3_SSL(
        server.host, server.pop3s_port, context=ca_context(test_ca), timeout=10
    )
    try:
        assert p.getwelcome().startswith(b"+OK")
        assert "STLS" not in p.capa()
        p.user(user[0])
        p.pass_(user[1])
    finally:
        p.quit()


def test_pop3s_by_name_localhost(server, test_ca):
    # the certificate names localhost too; Dovecot listens on IPv4 only
    with socket.create_connection((server.host, server.pop3s_port), timeout=5) as raw:
        with ca_context(test_ca).wrap_socket(raw, server_hostname="localhost") as s:
            assert s.recv(3) == b"+OK"


def test_self_signed_certificate_fails_verification(dovecot_factory, tmp_path, test_ca):
    cert, key = make_self_signed(tmp_path)
    d = dovecot_factory(users={"alice": "a"}, tls=(cert, key))
    p = poplib.POP3(d.host, d.pop3_port, timeout=10)
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="self.signed"):
            p.stls(ca_context(test_ca))
    finally:
        with contextlib.suppress(OSError):  # stls() closed the socket
            p.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL(d.host, d.pop3s_port, context=ca_context(test_ca), timeout=10)
    # ... and trusting it explicitly works: only the issuer was wrong
    ctx = ssl.create_default_context(cafile=str(cert))
    poplib.POP3_SSL(d.host, d.pop3s_port, context=ctx, timeout=10).quit()


def test_issued_certificate(server_cert, test_ca):
    cert = x509.load_pem_x509_certificate(server_cert[0].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {
        "127.0.0.1", "::1"
    }
    assert cert.issuer == test_ca.certificate.subject
    assert oct(os.stat(server_cert[1]).st_mode & 0o777) == "0o600"


# --- deleting ----------------------------------------------------------------


def test_dele_and_quit_removes_the_file(server, user):
    names = server.put_many(user[0], [MESSAGE + b"a\n", MESSAGE + b"b\n"])
    p = login(server, user)
    p.dele(1)
    p.quit()
    assert server.names(user[0]) == [names[1]]
    assert server.messages(user[0]) == [MESSAGE + b"b\n"]


def test_dele_without_quit_keeps_the_file(server, user):
    server.put(user[0], MESSAGE)
    p = login(server, user)
    p.dele(1)
    p.close()  # connection dropped: no UPDATE state
    time.sleep(0.1)
    p = login(server, user)
    try:
        assert p.stat()[0] == 1
    finally:
        p.quit()
    assert server.count(user[0]) == 1


# --- Maildir helpers -----------------------------------------------------------


def test_put_many_thousands_in_order(server, user):
    bodies = [b"Subject: m%d\n\nbody %d\n" % (i, i) for i in range(3000)]
    start = time.monotonic()
    server.put_many(user[0], bodies)
    assert time.monotonic() - start < 5
    assert server.count(user[0]) == 3000
    assert server.messages(user[0]) == bodies
    p = login(server, user)
    try:
        assert p.stat()[0] == 3000
        assert p.top(1, 0)[1][0] == b"Subject: m0"
        assert p.top(3000, 0)[1][0] == b"Subject: m2999"
    finally:
        p.quit()


def test_put_with_name_and_address(server, user):
    assert server.put(f"{user[0]}@example.org", MESSAGE, name="1000.test") == "1000.test"
    assert (server.maildir(user[0]) / "new" / "1000.test").exists()
    st = os.stat(server.maildir(user[0]) / "new" / "1000.test")
    assert (st.st_uid, st.st_gid) == (server.mail_uid, server.mail_gid)
    assert st.st_uid != 0
    assert os.listdir(server.maildir(user[0]) / "tmp") == []
    assert server.messages(user[0]) == [MESSAGE]


def test_set_user_while_running(server, user):
    login(server, user).quit()  # the passwd-file has been read this second
    server.set_user("latecomer", "late pw")
    server.put("latecomer", MESSAGE)
    p = login(server, ("latecomer", "late pw"))
    try:
        assert p.stat()[0] == 1
    finally:
        p.quit()


def test_passwd_file_mtime_always_moves_forward():
    # so that Dovecot sees a same-size change made within the same second
    require_dovecot(lmtp=False)
    d = Dovecot(users={"alice": "pw-1"})
    try:
        d.setup()
        before = os.stat(d.passwd_path).st_mtime
        d.set_user("alice", "pw-2")
        assert os.stat(d.passwd_path).st_mtime > before
        assert d.passwd_path.read_text() == "alice:{PLAIN}pw-2::::::\n"
    finally:
        d.stop()


# --- LMTP ----------------------------------------------------------------------


def test_lmtp_delivers_into_the_maildir(server, user):
    assert server.lmtp_port
    with smtplib.LMTP(server.host, server.lmtp_port) as lmtp:
        refused = lmtp.sendmail(
            "sender@example.org",
            [f"{user[0]}@example.org"],
            b"Subject: via lmtp\r\n\r\nhello lmtp\r\n",
        )
        assert refused == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            lmtp.sendmail("sender@example.org", ["nobody@example.org"], b"\r\n")
    [stored] = server.messages(user[0])
    assert b"Subject: via lmtp" in stored and stored.endswith(b"hello lmtp\n")
    assert b"Delivered-To: " + user[0].encode() in stored
    p = login(server, user)
    try:
        assert p.stat()[0] == 1
    finally:
        p.quit()


# --- lifecycle, options, fixtures -------------------------------------------------


def test_default_dovecot_fixture(dovecot, test_ca):
    assert dovecot.users == dict(DEFAULT_USERS)
    assert dovecot.lmtp_port is None
    dovecot.put("bob", MESSAGE)
    p = poplib.POP3_SSL(
        dovecot.host, dovecot.pop3s_port, context=ca_context(test_ca), timeout=10
    )
    try:
        p.user("bob")
        p.pass_(DEFAULT_USERS["bob"])
        assert p.stat()[0] == 1
    finally:
        p.quit()


def test_no_tls_and_restricted_mechanisms(dovecot_factory):
    d = dovecot_factory(tls=False, auth_mechanisms="plain")
    assert d.pop3s_port is None
    p = poplib.POP3(d.host, d.pop3_port, timeout=10)
    try:
        assert b"<" not in p.getwelcome()  # no APOP timestamp without "apop"
        capa = p.capa()
        assert "STLS" not in capa and capa["SASL"] == ["PLAIN"]
    finally:
        p.quit()


def test_plaintext_refused_when_not_loopback_to_itself(dovecot_factory):
    # Over 127.0.0.1 Dovecot counts the connection as secured; listening on
    # 127.0.0.2 (client address 127.0.0.1) it does not.
    d = dovecot_factory(tls=False, host="127.0.0.2", disable_plaintext_auth=True)
    p = poplib.POP3(d.host, d.pop3_port, timeout=10)
    try:
        assert "USER" not in p.capa()
        with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
            p.user("alice")
            p.pass_(DEFAULT_USERS["alice"])
    finally:
        p.close()


def test_restart_keeps_mail_and_ports(dovecot_factory):
    d = dovecot_factory(tls=False)
    d.put("alice", MESSAGE)
    port = d.pop3_port
    d.restart()
    assert d.pop3_port == port
    p = login(d, ("alice", DEFAULT_USERS["alice"]))
    try:
        assert p.stat()[0] == 1
    finally:
        p.quit()


def test_stop_ends_every_process_and_removes_the_directory(dovecot_factory):
    d = dovecot_factory(tls=True, lmtp=True)
    pgid, root = d.process.pid, d.root
    start = time.monotonic()
    d.stop()
    assert time.monotonic() - start < 2
    assert not d.running and not root.exists()
    with pytest.raises(OSError):
        socket.create_connection((d.host, d.pop3_port), timeout=1).close()
    assert not _group_alive(pgid)
    d.stop()  # twice is fine


def test_bad_config_raises_with_log_tail():
    require_dovecot(lmtp=False)
    d = Dovecot(users={"alice": "a"}, extra_config="no_such_setting = 1\n")
    try:
        with pytest.raises(DovecotStartError, match="no_such_setting"):
            d.start()
    finally:
        d.stop()


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_missing_dovecot_fails_loudly(monkeypatch):
    import rpopcore.testing.plugin as fixtures

    monkeypatch.setattr(fixtures, "missing_dovecot_parts", lambda lmtp: ["dovecot-core"])
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y dovecot-core"):
        fixtures.require_dovecot()
