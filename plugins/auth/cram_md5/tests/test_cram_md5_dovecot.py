"""CRAM-MD5 against a real Dovecot started by the test.

With ``auth_mechanisms = cram-md5`` Dovecot refuses USER/PASS and PLAIN, so
a login that succeeds proves CRAM-MD5 was used; Dovecot's log says so too
(``method=CRAM-MD5``).
"""

from __future__ import annotations

from rpopcore.testing import capa, client_lines, delivered, open_site, remote
from rpopcore.testing import poll_one as poll

PASSWORD = "alice-secret"


def mail(n: int) -> bytes:
    return f"From: sender{n}@isp.test\nTo: alice@isp.test\nSubject: cram {n}\nMessage-ID: <c{n}@isp.test>\n\nbody {n}\n".encode()



async def test_auto_logs_in_with_cram_md5_when_it_is_the_only_mechanism(dovecot_factory, tmp_path, rpop_log):
    dovecot = dovecot_factory(tls=False, auth_mechanisms="cram-md5")
    for n in range(2):
        dovecot.put("alice", mail(n))
    assert "SASL CRAM-MD5" in capa(dovecot.host, dovecot.pop3_port)
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password=PASSWORD))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (2, 2, None)
    assert "user=<alice>, method=CRAM-MD5" in dovecot.log_text()
    assert "logged in with cram-md5" in rpop_log.text
    assert PASSWORD not in rpop_log.text
    assert sorted(m.split(b"Subject: ")[1].split(b"\n")[0] for m in delivered(tmp_path)) == [b"cram 0", b"cram 1"]
    await site.close()


async def test_userpass_is_refused_by_that_dovecot(dovecot_factory, tmp_path):
    # The control for the test above: the same server refuses a password sent
    # any other way.
    dovecot = dovecot_factory(tls=False, auth_mechanisms="cram-md5")
    dovecot.put("alice", mail(1))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password=PASSWORD,
                                            auth="userpass"))
    assert (await poll(site)).error == "auth-failed"
    assert delivered(tmp_path) == []
    await site.close()


async def test_a_wrong_password_is_auth_failed(dovecot_factory, tmp_path, rpop_log):
    dovecot = dovecot_factory(tls=False, auth_mechanisms="cram-md5")
    dovecot.put("alice", mail(1))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password="not-it"))
    result = await poll(site)
    assert result.error == "auth-failed"
    assert client_lines(rpop_log)[-1] == "C: ****"  # the answer to the challenge, then -ERR
    assert "cram-md5(alice,127.0.0.1" in dovecot.log_text() and "Password mismatch" in dovecot.log_text()
    assert delivered(tmp_path) == []
    assert dovecot.count("alice") == 1
    await site.close()


async def test_auto_on_a_clear_connection_prefers_cram_md5_to_plain(dovecot_factory, tmp_path, rpop_log):
    dovecot = dovecot_factory(tls=False, auth_mechanisms="plain cram-md5")
    dovecot.put("alice", mail(1))
    assert "SASL PLAIN CRAM-MD5" in capa(dovecot.host, dovecot.pop3_port)
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password=PASSWORD))
    assert (await poll(site)).error is None
    assert "C: AUTH CRAM-MD5" in client_lines(rpop_log)
    assert "user=<alice>, method=CRAM-MD5" in dovecot.log_text()
    await site.close()


async def test_cram_md5_named_by_the_record_is_used_on_tls_too(dovecot_factory, test_ca, tmp_path, rpop_log):
    dovecot = dovecot_factory(tls=True, auth_mechanisms="plain cram-md5")
    dovecot.put("alice", mail(1))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password=PASSWORD,
                                            auth="cram-md5", ca_file=str(test_ca.ca_pem_path)))
    assert (await poll(site)).error is None
    sent = client_lines(rpop_log)
    assert sent[:4] == ["C: CAPA", "C: STLS", "C: CAPA", "C: AUTH CRAM-MD5"]
    assert "user=<alice>, method=CRAM-MD5" in dovecot.log_text()
    assert len(delivered(tmp_path)) == 1
    await site.close()
