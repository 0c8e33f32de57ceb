"""A record's oauth2 table as the declarative file stores it, read back with
its sealed secrets, and what is refused."""

from __future__ import annotations

import pytest
from rpop_oauth2 import OAuth2Account

from rpopcore.api import RemoteRecord, SecretUnavailable
from rpopcore.testing import open_site, remote


def bare_record(oauth2) -> RemoteRecord:
    return RemoteRecord(kind="unified", account="a", host="pop.example.test", options={"oauth2": oauth2})


async def test_a_records_oauth2_table_is_read_with_its_sealed_secrets(tmp_path):
    table = (
        'oauth2 = { token_endpoint = "https://oauth2.googleapis.com/token", client_id = "id-1", '
        'client_secret = "cs-1", refresh_token = "rt-1", scope = "https://mail.google.com/" }\n'
    )
    site = await open_site(tmp_path, remote("pop.gmail.com", 995, tls=True, auth="xoauth2") + table)
    (record,) = await site.store.list_records()
    account = OAuth2Account.of(record)
    assert "rt-1" not in repr(account) and "cs-1" not in repr(account)
    assert account.refresh_token.source == account.client_secret.source == "stored"
    grant = account.grant(site.keyring.reveal)
    assert (grant.token_endpoint, grant.client_id, grant.client_secret, grant.refresh_token, grant.scope) == (
        "https://oauth2.googleapis.com/token", "id-1", "cs-1", "rt-1", "https://mail.google.com/"
    )
    assert "rt-1" not in repr(grant) and "rt-1" not in str(grant.key)
    await site.close()


async def test_a_record_without_client_secret_is_a_public_client(tmp_path):
    table = 'oauth2 = { token_endpoint = "https://login.microsoftonline.com/common/oauth2/v2.0/token", client_id = "id-2", refresh_token = "rt-2" }\n'
    site = await open_site(tmp_path, remote("outlook.office365.com", 995, tls=True, auth="xoauth2") + table)
    (record,) = await site.store.list_records()
    grant = OAuth2Account.of(record).grant(site.keyring.reveal)
    assert (grant.client_secret, grant.scope, grant.refresh_token) == ("", "", "rt-2")
    assert OAuth2Account.of(bare_record({})) is None
    await site.close()


@pytest.mark.parametrize(
    "table",
    [
        "not a table",
        {"client_id": "id", "refresh_token": {"source": "stored", "value": "x"}},
        {"token_endpoint": "https://t.example/token", "client_id": "id", "refresh_token": "rt-in-clear"},
        {"token_endpoint": "https://t.example/token", "client_id": "id", "refresh_token": {"source": "paper", "value": "x"}},
    ],
)
def test_a_damaged_table_is_secret_unavailable_without_echoing_it(table):
    with pytest.raises(SecretUnavailable) as caught:
        OAuth2Account.of(bare_record(table))
    assert "rt-in-clear" not in str(caught.value)
