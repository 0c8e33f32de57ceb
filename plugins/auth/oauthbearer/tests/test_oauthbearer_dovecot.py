"""OAUTHBEARER (RFC 7628) against a real Dovecot whose ``oauth2`` passdb
checks every bearer token by introspection at the test provider, which also
issues the tokens for the record's refresh token."""

from __future__ import annotations

import re

from rpopcore.testing import delivered, open_site, remote
from rpopcore.testing import poll_one as poll

MECHANISMS = "plain xoauth2 oauthbearer"


def mail(n: int) -> bytes:
    return f"From: sender{n}@isp.test\nTo: alice@isp.test\nSubject: bearer {n}\nMessage-ID: <b{n}@isp.test>\n\nbody {n}\n".encode()



def logins(dovecot) -> int:
    return len(re.findall(r"Login: user=<alice>, method=OAUTHBEARER\b", dovecot.log_text()))


async def test_login_after_stls_delivers_mail_and_reuses_the_token(
    dovecot_factory, oauth2_provider, test_ca, tmp_path, rpop_log
):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    dovecot = dovecot_factory(tls=True, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    dovecot.put_many("alice", [mail(1), mail(2)])
    record = remote(
        dovecot.host, dovecot.pop3_port, account="alice", starttls="required",
        ca_file=str(test_ca.ca_pem_path), auth="oauthbearer",
    )
    site = await open_site(tmp_path, record + provider.record_table(refresh_token))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (2, 2, None)
    assert len(delivered(tmp_path)) == 2
    assert provider.introspections == provider.issued and logins(dovecot) == 1

    dovecot.put("alice", mail(3))
    assert (await poll(site)).retrieved == 1
    assert len(provider.grants) == 1 and logins(dovecot) == 2

    text = rpop_log.text
    assert "TLS established" in text and "C: AUTH OAUTHBEARER ****" in text
    assert "logged in with oauthbearer" in text
    for secret in [refresh_token, *provider.issued]:
        assert secret not in text
    await site.close()


async def test_a_token_the_provider_expired_early_is_refreshed_and_the_login_retried(
    dovecot_factory, oauth2_provider, tmp_path, rpop_log
):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    dovecot = dovecot_factory(tls=False, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    site = await open_site(
        tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", auth="oauthbearer") + provider.record_table(refresh_token)
    )
    assert (await poll(site)).error is None
    provider.expire_access_tokens()
    dovecot.put("alice", mail(1))
    result = await poll(site)
    assert (result.delivered, result.error) == (1, None)
    assert len(provider.grants) == 2 and logins(dovecot) == 2
    assert dovecot.log_text().count("oauth2 failed") == 1
    # Dovecot's RFC 7628 error status, answered with %x01 so it could end the exchange
    assert '{"status":"invalid_token"}' in rpop_log.text
    await site.close()


async def test_a_revoked_refresh_token_is_auth_failed_with_the_providers_reason_in_the_log(
    dovecot_factory, oauth2_provider, tmp_path, rpop_log
):
    provider = oauth2_provider(client_secret="bearer-client-secret")
    refresh_token = provider.add_account("alice")
    provider.revoke(refresh_token)
    dovecot = dovecot_factory(tls=False, auth_mechanisms=MECHANISMS, oauth2=provider.dovecot_settings())
    dovecot.put("alice", mail(1))
    site = await open_site(
        tmp_path, remote(dovecot.host, dovecot.pop3_port, account="alice", auth="oauthbearer") + provider.record_table(refresh_token)
    )
    result = await poll(site)
    assert result.error == "auth-failed"
    assert dovecot.count("alice") == 1 and delivered(tmp_path) == []
    assert logins(dovecot) == 0 and provider.introspections == []  # no token, no AUTH
    text = rpop_log.text
    assert "poll failed (auth-failed)" in text and "invalid_grant: Token has been expired or revoked." in text
    assert refresh_token not in text and "bearer-client-secret" not in text
    await site.close()
