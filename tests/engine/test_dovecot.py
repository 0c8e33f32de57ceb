"""Per-user retrieval from a real Dovecot POP3 server started by the test:
USER/PASS, APOP, STLS, implicit TLS, leave on and off, UID forgetting,
pipelining, and certificate verification."""

from __future__ import annotations

from rpopcore.testing.sites import delivered, open_site, remote
from rpopcore.testing.sites import poll_one as poll
from rpopcore.testing.probes import capa

ALICE = ("alice", "alice-secret")


def mail(n: int, extra: str = "") -> bytes:
    return (f"Return-Path: <sender{n}@isp.test>\nFrom: sender{n}@isp.test\nTo: alice@isp.test\n"
            f"Subject: dovecot {n}\nMessage-ID: <{n}@isp.test>\n{extra}\nbody {n}\n.dot line\n").encode()


def subjects(folder) -> list[bytes]:
    return sorted(m.split(b"Subject: ")[1].split(b"\n")[0] for m in delivered(folder))



async def test_userpass_leave_on_then_uid_forgetting(dovecot_factory, tmp_path):
    dovecot = dovecot_factory(tls=False)
    for n in range(3):
        dovecot.put("alice", mail(n))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice",
                                            password=ALICE[1], leave=True))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (3, 3, None)
    assert dovecot.count("alice") == 3
    assert (await poll(site)).retrieved == 0
    (record,) = await site.store.list_records()
    assert len(await site.store.seen_uids(record.mailbox)) == 3

    # A message deleted on the server by someone else: its UID is forgotten;
    # a new one arrives and is retrieved alone.
    _remove_first(dovecot)
    dovecot.put("alice", mail(9))
    result = await poll(site)
    assert (result.retrieved, result.error) == (1, None)
    assert len(await site.store.seen_uids(record.mailbox)) == 3
    assert subjects(tmp_path) == [b"dovecot 0", b"dovecot 1", b"dovecot 2", b"dovecot 9"]
    copy = next(m for m in delivered(tmp_path) if b"Subject: dovecot 0\n" in m)
    assert copy.startswith(b"Return-Path: <sender0@isp.test>\nDelivered-To: alice@example.test\nFrom: sender0@isp.test\n")
    assert copy.endswith(b"\nbody 0\n.dot line\n")
    await site.close()


def _remove_first(dovecot):
    path = sorted(p for sub in ("new", "cur") for p in (dovecot.maildir("alice") / sub).iterdir())[0]
    path.unlink()


async def test_leave_off_deletes_from_dovecot_with_pipelining(dovecot_factory, tmp_path):
    dovecot = dovecot_factory(tls=False)
    for n in range(40):
        dovecot.put("alice", mail(n))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice",
                                            password=ALICE[1], leave=False))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (40, 40, None)
    assert dovecot.count("alice") == 0
    assert len(delivered(tmp_path)) == 40
    assert "PIPELINING" in capa(dovecot.host, dovecot.pop3_port)
    await site.close()


async def test_apop_against_dovecot(dovecot_factory, tmp_path):
    # Only APOP is enabled: a USER/PASS login would be refused, so success
    # proves APOP was used.
    dovecot = dovecot_factory(tls=False, auth_mechanisms="apop")
    dovecot.put("alice", mail(1))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice",
                                            password=ALICE[1], apop=True))
    assert (await poll(site)).error is None
    assert len(delivered(tmp_path)) == 1
    await site.close()

    clear = tmp_path / "clear"
    site = await open_site(clear, remote(dovecot.host, dovecot.pop3_port, account="alice",
                                         password=ALICE[1], apop=False))
    assert (await poll(site)).error == "auth-failed"
    await site.close()

    wrong = tmp_path / "wrong"
    site = await open_site(wrong, remote(dovecot.host, dovecot.pop3_port, account="alice",
                                         password="nope", apop=True))
    assert (await poll(site)).error == "auth-failed"
    await site.close()


async def test_stls_upgrade_is_verified_with_the_records_ca(dovecot_factory, test_ca, tmp_path):
    dovecot = dovecot_factory(tls=True)
    dovecot.put("alice", mail(1))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice",
                                            password=ALICE[1], ca_file=str(test_ca.ca_pem_path)))
    assert (await poll(site)).error is None
    assert len(delivered(tmp_path)) == 1
    await site.close()


async def test_an_unverifiable_certificate_is_tls_failed_never_clear_text(dovecot_factory, tmp_path):
    dovecot = dovecot_factory(tls=True)
    dovecot.put("alice", mail(1))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", password=ALICE[1]))
    result = await poll(site)
    assert result.error == "tls-failed"
    assert "ca_file" in result.detail and "tls_verify = false" in result.detail
    assert delivered(tmp_path) == []
    await site.close()

    knowingly = tmp_path / "unverified"
    site = await open_site(knowingly, remote(dovecot.host, dovecot.pop3_port, account="alice",
                                             password=ALICE[1], tls_verify=False))
    assert (await poll(site)).error is None
    await site.close()


async def test_implicit_tls_on_the_pop3s_port(dovecot_factory, test_ca, tmp_path):
    dovecot = dovecot_factory(tls=True)
    dovecot.put("alice", mail(1))
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3s_port, account="alice", password=ALICE[1],
                                            tls=True, ca_file=str(test_ca.ca_pem_path)))
    assert (await poll(site)).error is None
    assert len(delivered(tmp_path)) == 1

    untrusted = tmp_path / "untrusted"
    site2 = await open_site(untrusted, remote(dovecot.host, dovecot.pop3s_port, account="alice",
                                              password=ALICE[1], tls=True))
    assert (await poll(site2)).error == "tls-failed"
    await site.close()
    await site2.close()


async def test_starttls_required_fails_when_not_offered(dovecot_factory, tmp_path):
    dovecot = dovecot_factory(tls=False)
    site = await open_site(tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice",
                                            password=ALICE[1], starttls="required"))
    assert (await poll(site)).error == "tls-failed"
    await site.close()
