"""XOAUTH2 against a real Dovecot whose ``oauth2`` passdb checks every bearer
token by introspection at the test provider, which also issues the tokens
for the record's refresh token: as with Gmail, but on loopback."""

from __future__ import annotations

import re

from rpop_oauth2 import CACHE

from rpopcore.testing import delivered, open_site, remote
from rpopcore.testing import poll_one as poll

MECHANISMS = "plain xoauth2 oauthbearer"


def mail(n: int) -> bytes:
    return f"From: sender{n}@isp.test\nTo: alice@isp.test\nSubject: oauth {n}\nMessage-ID: <{n}@isp.test>\n\nbody {n}\n".encode()


def subjects(folder) -> list[bytes]:
    return sorted(m.split(b"Subject: ")[1].split(b"\n")[0] for m in delivered(folder))



def logins(dovecot, method: str) -> int:
    return len(re.findall(rf"Login: user=<alice>, method={method}\b", dovecot.log_text()))


def imap_failures(dovecot) -> int:
    return dovecot.log_text().count("oauth2 failed")


async def test_gmail_style_login_over_tls_delivers_mail_and_reuses_the_token(
    dovecot_factory, oauth2_provider, test_ca, tmp_path, rpop_log
):
    provider = oauth2_provider(client_secret="gmail-client-secret")
    refresh_token = provider.add_account("alice")
    dovecot = dovecot_factory(tls=True, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    dovecot.put_many("alice", [mail(1), mail(2)])
    record = remote(
        dovecot.host, dovecot.pop3s_port, account="alice", tls=True, ca_file=str(test_ca.ca_pem_path), auth="xoauth2"
    )
    site = await open_site(tmp_path, record + provider.record_table(refresh_token, scope="https://mail.google.com/"))

    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (2, 2, None)
    assert subjects(tmp_path) == [b"oauth 1", b"oauth 2"]
    (grant,) = provider.grants
    assert (grant.client_secret, grant.scope) == ("gmail-client-secret", "https://mail.google.com/")
    assert provider.introspections == provider.issued  # Dovecot checked the token it was given
    assert logins(dovecot, "XOAUTH2") == 1

    # The next poll logs in with the cached token: no new grant.
    dovecot.put("alice", mail(3))
    result = await poll(site)
    assert (result.retrieved, result.error) == (1, None)
    assert len(provider.grants) == 1 and logins(dovecot, "XOAUTH2") == 2

    text = rpop_log.text
    assert "C: AUTH XOAUTH2 ****" in text  # a short token: the initial response
    assert "logged in with xoauth2" in text
    for secret in [refresh_token, "gmail-client-secret", *provider.issued]:
        assert secret not in text
    await site.close()


async def test_auto_selection_picks_xoauth2_for_a_record_with_an_oauth2_table(dovecot_factory, oauth2_provider, tmp_path):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    dovecot = dovecot_factory(tls=False, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    dovecot.put("alice", mail(1))
    site = await open_site(
        tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", auth="auto") + provider.record_table(refresh_token)
    )
    assert (await poll(site)).error is None
    assert logins(dovecot, "XOAUTH2") == 1 and logins(dovecot, "PLAIN") == 0
    await site.close()


async def test_a_token_the_provider_expired_early_is_refreshed_and_the_login_retried(
    dovecot_factory, oauth2_provider, tmp_path, rpop_log
):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    dovecot = dovecot_factory(tls=False, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    site = await open_site(
        tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", auth="xoauth2") + provider.record_table(refresh_token)
    )
    assert (await poll(site)).error is None
    assert len(provider.grants) == 1

    provider.expire_access_tokens()  # the cache still believes in its token
    dovecot.put("alice", mail(1))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (1, 1, None)
    assert len(provider.grants) == 2  # a second refresh
    assert imap_failures(dovecot) == 1 and logins(dovecot, "XOAUTH2") == 2
    assert "xoauth2: the server refused the cached access token" in rpop_log.text
    assert '{"status":"401","schemes":"bearer","scope":"mail"}' in rpop_log.text
    await site.close()


async def test_a_token_past_its_expiry_is_refreshed_before_the_login(
    dovecot_factory, oauth2_provider, tmp_path, monkeypatch
):
    now = [5000.0]
    monkeypatch.setattr(CACHE, "clock", lambda: now[0])
    provider = oauth2_provider(expires_in=3600)
    refresh_token = provider.add_account("alice")
    dovecot = dovecot_factory(tls=False, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    site = await open_site(
        tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", auth="xoauth2") + provider.record_table(refresh_token)
    )
    assert (await poll(site)).error is None
    now[0] += 3600  # an hour later the cached token has expired
    dovecot.put("alice", mail(1))
    result = await poll(site)
    assert (result.retrieved, result.error) == (1, None)
    assert len(provider.grants) == 2
    assert imap_failures(dovecot) == 0  # refreshed before, not after a refusal
    assert provider.introspections == provider.issued
    await site.close()


async def test_a_revoked_refresh_token_ends_the_poll_as_auth_failed_with_the_providers_reason(
    dovecot_factory, oauth2_provider, tmp_path, rpop_log
):
    provider = oauth2_provider(client_secret="client-secret-value")
    refresh_token = provider.add_account("alice")
    dovecot = dovecot_factory(tls=False, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    dovecot.put("alice", mail(1))
    site = await open_site(
        tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", auth="xoauth2") + provider.record_table(refresh_token)
    )
    assert (await poll(site)).error is None

    provider.revoke(refresh_token)  # the user revoked rpop's access: tokens die too
    dovecot.put("alice", mail(2))
    result = await poll(site)
    assert result.error == "auth-failed"
    assert "invalid_grant: Token has been expired or revoked." in result.detail
    (record,) = await site.store.list_records()
    assert (await site.store.load_status(record.id)).error == "auth-failed"
    assert dovecot.count("alice") == 2 and len(delivered(tmp_path)) == 1

    text = rpop_log.text
    assert "poll failed (auth-failed)" in text
    assert "Token has been expired or revoked." in text
    for secret in [refresh_token, "client-secret-value", *provider.issued]:
        assert secret not in text
    await site.close()


async def test_a_5kb_token_goes_in_the_two_step_form(dovecot_factory, oauth2_provider, tmp_path, rpop_log):
    provider = oauth2_provider(token_size=5000)
    refresh_token = provider.add_account("alice")
    dovecot = dovecot_factory(tls=False, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    dovecot.put("alice", mail(1))
    site = await open_site(
        tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", auth="xoauth2") + provider.record_table(refresh_token)
    )
    assert (await poll(site)).error is None
    assert len(provider.issued[0]) == 5000
    text = rpop_log.text
    assert "C: AUTH XOAUTH2\n" in text and "C: AUTH XOAUTH2 ****" not in text
    assert provider.issued[0] not in text
    await site.close()


async def test_a_rotated_refresh_token_is_stored_and_used_after_a_restart(
    dovecot_factory, oauth2_provider, test_ca, tmp_path, rpop_log
):
    # Microsoft issues a new refresh token with every grant and may revoke
    # the old one: rpop stores the new one in the record, sealed.
    provider = oauth2_provider(rotate=True)
    first = provider.add_account("alice")
    dovecot = dovecot_factory(tls=True, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    dovecot.put("alice", mail(1))
    record = remote(dovecot.host, dovecot.pop3s_port, account="alice", tls=True, ca_file=str(test_ca.ca_pem_path),
                    auth="xoauth2")
    site = await open_site(tmp_path, record + provider.record_table(first))
    assert (await poll(site)).error is None
    CACHE.clear()  # as after a restart: nothing in memory, and the first refresh token no longer works
    dovecot.put("alice", mail(2))
    result = await poll(site)
    assert (result.retrieved, result.error) == (1, None)
    assert [g.refresh_token for g in provider.grants][0] == first
    assert provider.grants[1].refresh_token != first
    (stored,) = await site.store.list_records()
    assert provider.grants[1].refresh_token not in str(stored.options), "stored sealed, never in clear"
    assert "stored the new oauth2.refresh_token" in rpop_log.text
    for secret in [first, *(g.refresh_token for g in provider.grants)]:
        assert secret not in rpop_log.text
    await site.close()
