"""The token client on its own, against the test provider's token endpoint
on loopback: the refresh-token grant, the cache and its expiry, and how each
way a grant can fail becomes an error code."""

from __future__ import annotations

import asyncio
import socket

import pytest
from rpop_oauth2 import AccessToken, RefreshGrant, TokenCache, request_token
from rpop_oauth2.tokens import check_endpoint

from rpopcore.api import (
    AuthFailed,
    MechanismUnavailable,
    ProtocolError,
    ServerPermanentFailure,
    ServerTemporaryFailure,
    Timeout,
)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def grant_for(provider, refresh_token: str, **changes) -> RefreshGrant:
    values = dict(
        token_endpoint=provider.token_url,
        client_id=provider.client_id,
        refresh_token=refresh_token,
        client_secret=provider.client_secret,
        scope="https://mail.example/ offline_access",
    )
    values.update(changes)
    return RefreshGrant(**values)


async def test_a_grant_sends_the_refresh_token_client_and_scope_and_is_cached_until_shortly_before_expiry(oauth2_provider):
    provider = oauth2_provider(client_secret="client-s3cret", expires_in=3600)
    refresh_token = provider.add_account("alice")
    clock = Clock()
    cache = TokenCache(clock=clock, margin=60)
    grant = grant_for(provider, refresh_token)

    first = await cache.token(grant, timeout=5)
    assert first.fresh and first.value == provider.issued[-1]
    (sent,) = provider.grants
    assert (sent.grant_type, sent.refresh_token, sent.client_id, sent.client_secret, sent.scope) == (
        "refresh_token", refresh_token, provider.client_id, "client-s3cret", "https://mail.example/ offline_access"
    )

    clock.now += 3600 - 61  # still more than the margin left: the cached token
    again = await cache.token(grant, timeout=5)
    assert (again.value, again.fresh) == (first.value, False)
    assert len(provider.grants) == 1

    clock.now += 2  # within the margin: a new grant
    renewed = await cache.token(grant, timeout=5)
    assert renewed.fresh and renewed.value != first.value
    assert len(provider.grants) == 2


async def test_a_public_client_sends_no_secret_and_no_scope_when_none_is_configured(oauth2_provider):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    await request_token(grant_for(provider, refresh_token, scope=""), timeout=5)
    (sent,) = provider.grants
    assert (sent.client_secret, sent.scope) == ("", "")


async def test_concurrent_polls_sharing_a_refresh_token_wait_for_one_grant(oauth2_provider):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    cache = TokenCache()
    grant = grant_for(provider, refresh_token)
    tokens = await asyncio.gather(*(cache.token(grant, timeout=5) for _ in range(5)))
    assert len({t.value for t in tokens}) == 1
    assert len(provider.grants) == 1


async def test_different_refresh_tokens_get_their_own_tokens(oauth2_provider):
    provider = oauth2_provider()
    cache = TokenCache()
    a = await cache.token(grant_for(provider, provider.add_account("alice")), timeout=5)
    b = await cache.token(grant_for(provider, provider.add_account("bob")), timeout=5)
    assert a.value != b.value and len(provider.grants) == 2


async def test_a_rotated_refresh_token_is_used_for_the_next_grant(oauth2_provider):
    provider = oauth2_provider(rotate=True)
    configured = provider.add_account("alice")
    cache = TokenCache()
    grant = grant_for(provider, configured)
    await cache.refresh(grant, timeout=5)
    await cache.refresh(grant, timeout=5)
    first, second = provider.grants
    assert first.refresh_token == configured
    assert second.refresh_token not in ("", configured)


async def test_forget_drops_only_the_token_it_names(oauth2_provider):
    provider = oauth2_provider()
    cache = TokenCache()
    grant = grant_for(provider, provider.add_account("alice"))
    token = await cache.token(grant, timeout=5)
    cache.forget(grant, AccessToken("some other token", token.expires_at, fresh=False))
    assert not (await cache.token(grant, timeout=5)).fresh
    cache.forget(grant, token)
    assert (await cache.token(grant, timeout=5)).fresh
    assert len(provider.grants) == 2


async def test_a_revoked_refresh_token_is_auth_failed_with_the_providers_reason(oauth2_provider):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    provider.revoke(refresh_token)
    with pytest.raises(AuthFailed) as caught:
        await TokenCache().token(grant_for(provider, refresh_token), timeout=5)
    message = str(caught.value)
    assert caught.value.code == "auth-failed"
    assert "invalid_grant: Token has been expired or revoked." in message
    assert provider.token_url in message
    assert refresh_token not in message


async def test_a_wrong_client_secret_is_auth_failed(oauth2_provider):
    provider = oauth2_provider(client_secret="right")
    refresh_token = provider.add_account("alice")
    with pytest.raises(AuthFailed, match="invalid_client: Unknown client or wrong secret"):
        await request_token(grant_for(provider, refresh_token, client_secret="not-the-secret"), timeout=5)


async def test_a_secret_echoed_by_the_provider_is_masked(oauth2_provider):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    provider.failures.append((400, {"error": "invalid_grant", "error_description": f"bad token {refresh_token}\nend"}))
    with pytest.raises(AuthFailed) as caught:
        await request_token(grant_for(provider, refresh_token), timeout=5)
    assert refresh_token not in str(caught.value)
    assert "bad token **** end" in str(caught.value)


async def test_an_unreachable_token_endpoint_is_a_temporary_failure_not_auth_failed():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    grant = RefreshGrant(f"http://127.0.0.1:{port}/token", "client", "rt-secret")
    with pytest.raises(ServerTemporaryFailure) as caught:
        await TokenCache().token(grant, timeout=5)
    assert caught.value.code == "server-temporary"
    assert f"cannot reach the token endpoint http://127.0.0.1:{port}/token" in str(caught.value)
    assert "rt-secret" not in str(caught.value)


async def test_a_token_endpoint_that_never_answers_is_a_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        grant = RefreshGrant(f"http://127.0.0.1:{listener.getsockname()[1]}/token", "client", "rt-secret")
        with pytest.raises(Timeout, match="did not answer within 0.5s"):
            await request_token(grant, timeout=0.5)


@pytest.mark.parametrize(
    "status, body, error",
    [
        (503, {}, ServerTemporaryFailure),
        (429, {}, ServerTemporaryFailure),
        (400, {"error": "temporarily_unavailable"}, ServerTemporaryFailure),
        (500, {"error": "server_error", "error_description": "try later"}, ServerTemporaryFailure),
        (403, {}, ServerPermanentFailure),
        (400, {"error": "invalid_scope", "error_description": "scope not granted"}, AuthFailed),
        (200, {"token_type": "Bearer"}, ProtocolError),
        (200, {"access_token": "x", "token_type": "mac"}, ProtocolError),
    ],
)
async def test_other_answers_of_the_token_endpoint(oauth2_provider, status, body, error):
    provider = oauth2_provider()
    refresh_token = provider.add_account("alice")
    provider.failures.append((status, body))
    with pytest.raises(error):
        await request_token(grant_for(provider, refresh_token), timeout=5)


async def test_a_wrong_token_endpoint_path_is_a_permanent_failure(oauth2_provider):
    provider = oauth2_provider()
    grant = grant_for(provider, provider.add_account("alice"), token_endpoint=provider.base_url + "/nope")
    with pytest.raises(ServerPermanentFailure, match="answered HTTP 404; check token_endpoint"):
        await request_token(grant, timeout=5)


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://oauth2.googleapis.com/token", True),
        ("https://login.microsoftonline.com/common/oauth2/v2.0/token", True),
        ("http://127.0.0.1:8080/token", True),
        ("http://[::1]:8080/token", True),
        ("http://localhost/token", True),
        ("http://oauth2.googleapis.com/token", False),
        ("http://192.0.2.1/token", False),
        ("ftp://example.org/token", False),
        ("https:///token", False),
    ],
)
def test_the_refresh_token_goes_only_over_https_or_to_loopback(url, allowed):
    if allowed:
        check_endpoint(url)
    else:
        with pytest.raises(MechanismUnavailable, match="not an https:// URL"):
            check_endpoint(url)
