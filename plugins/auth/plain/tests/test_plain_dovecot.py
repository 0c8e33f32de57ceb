"""SASL PLAIN against a real Dovecot started by the test.

Dovecot's own log names the method of every login (``method=PLAIN``), but a
USER/PASS login is PLAIN to it too; what rpop put on the wire is read from
rpop's protocol log (``C: AUTH PLAIN ****``, secrets redacted).
"""

from __future__ import annotations

from rpopcore.testing import capa, client_lines, delivered, open_site, remote
from rpopcore.testing import poll_one as poll

PASSWORD = "alice-secret"


def mail(n: int) -> bytes:
    return f"From: sender{n}@isp.test\nTo: alice@isp.test\nSubject: plain {n}\nMessage-ID: <p{n}@isp.test>\n\nbody {n}\n".encode()



async def test_auto_on_a_tls_connection_logs_in_with_plain(dovecot_factory, test_ca, tmp_path, rpop_log):
    # Both CRAM-MD5 and PLAIN are offered; after STLS the channel is private,
    # so auto prefers PLAIN.
    dovecot = dovecot_factory(tls=True, auth_mechanisms="plain cram-md5")
    dovecot.put("alice", mail(1))
    assert "SASL PLAIN CRAM-MD5" in capa(dovecot.host, dovecot.pop3_port)
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password=PASSWORD,
                                            ca_file=str(test_ca.ca_pem_path)))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (1, 1, None)
    sent = client_lines(rpop_log)
    assert sent[:3] == ["C: CAPA", "C: STLS", "C: CAPA"]
    assert "C: AUTH PLAIN ****" in sent
    assert not any(line.startswith(("C: USER", "C: PASS", "C: AUTH CRAM-MD5")) for line in sent)
    assert PASSWORD not in rpop_log.text
    assert "logged in with plain" in rpop_log.text
    assert "user=<alice>, method=PLAIN" in dovecot.log_text()
    assert [m.split(b"Subject: ")[1].split(b"\n")[0] for m in delivered(tmp_path)] == [b"plain 1"]
    await site.close()


async def test_plain_named_by_the_record_on_a_clear_connection(dovecot_factory, tmp_path, rpop_log):
    dovecot = dovecot_factory(tls=False, auth_mechanisms="plain")
    dovecot.put("alice", mail(1))
    dovecot.put("alice", mail(2))
    assert "SASL PLAIN" in capa(dovecot.host, dovecot.pop3_port)
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password=PASSWORD,
                                            auth="plain", leave=False))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (2, 2, None)
    assert "C: AUTH PLAIN ****" in client_lines(rpop_log)
    assert dovecot.count("alice") == 0
    assert len(delivered(tmp_path)) == 2
    await site.close()


async def test_a_wrong_password_is_auth_failed(dovecot_factory, tmp_path, rpop_log):
    dovecot = dovecot_factory(tls=False, auth_mechanisms="plain")
    dovecot.put("alice", mail(1))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password="not-it",
                                            auth="plain"))
    result = await poll(site)
    assert result.error == "auth-failed"
    assert "C: AUTH PLAIN ****" in client_lines(rpop_log)
    assert delivered(tmp_path) == []
    assert dovecot.count("alice") == 1
    await site.close()
