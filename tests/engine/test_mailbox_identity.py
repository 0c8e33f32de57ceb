"""The UID memory belongs to the remote mailbox, not to a record's row:
an administrator who edits a record -- another port, TLS, another owner --
or removes it and adds it back later gets nothing twice from a real Dovecot."""

from __future__ import annotations

from rpopcore.testing.sites import delivered, open_site, remote
from rpopcore.testing.sites import poll_one as poll

PASSWORD = "alice-secret"


def mail(n: int) -> bytes:
    return f"From: s{n}@isp.test\nSubject: kept {n}\nMessage-ID: <{n}@isp.test>\n\nbody {n}\n".encode()


async def test_the_same_mailbox_over_pop3s_on_another_port_is_not_retrieved_again(dovecot_factory, test_ca, tmp_path):
    dovecot = dovecot_factory(tls=True)
    for n in range(3):
        dovecot.put("alice", mail(n))
    plain = remote(dovecot.host, dovecot.pop3_port, account="alice", password=PASSWORD, leave=True,
                   starttls="never")
    site = await open_site(tmp_path, plain)
    assert (await poll(site)).delivered == 3

    (tmp_path / "decl.toml").write_text((tmp_path / "decl.toml").read_text().replace(
        plain, remote(dovecot.host, dovecot.pop3s_port, account="alice", password=PASSWORD, tls=True, leave=True,
                      ca_file=str(test_ca.ca_pem_path), owner="bob@example.test")))
    dovecot.put("alice", mail(3))
    await site.apply(tmp_path / "decl.toml")
    result = await poll(site)
    assert (result.error, result.retrieved) == (None, 1), "only the new message, though port, TLS and owner changed"
    assert len(delivered(tmp_path)) == 3 and len(delivered(tmp_path, "bob")) == 1
    await site.close()


async def test_a_record_removed_and_added_back_retrieves_nothing_twice(dovecot_factory, tmp_path):
    dovecot = dovecot_factory(tls=False)
    for n in range(2):
        dovecot.put("alice", mail(n))
    record = remote(dovecot.host, dovecot.pop3_port, account="alice", password=PASSWORD, leave=True)
    site = await open_site(tmp_path, record)
    assert (await poll(site)).delivered == 2

    declaration = (tmp_path / "decl.toml").read_text()
    (tmp_path / "decl.toml").write_text(declaration.replace(record, ""))
    await site.apply(tmp_path / "decl.toml")
    assert await site.store.list_records() == []
    (tmp_path / "decl.toml").write_text(declaration)
    await site.apply(tmp_path / "decl.toml")
    result = await poll(site)
    assert (result.error, result.retrieved) == (None, 0)
    assert len(delivered(tmp_path)) == 2
    await site.close()
