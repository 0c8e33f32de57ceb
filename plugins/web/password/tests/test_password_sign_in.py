"""Sign-in with a web password, against a real SQLite state store."""

from __future__ import annotations

import pytest

from rpop_web_password import PasswordAuthenticator
from rpopcore.testing import plugin_manager

ALICE = "alice@example.test"


@pytest.fixture
async def store(tmp_path):
    factories = {}
    for contributed in plugin_manager().hook.rpop_state_stores():
        factories.update(contributed)
    store = factories["sqlite"]({}, tmp_path)
    await store.open()
    yield store
    await store.close()


async def test_the_right_password_signs_in_and_only_its_hash_is_stored(store):
    auth = PasswordAuthenticator()
    await auth.set_password(ALICE, "correct horse", store)
    assert "correct horse" not in await store.load_web_password(ALICE)
    assert await auth.authenticate(ALICE, "correct horse", store)
    assert not await auth.authenticate(ALICE, "wrong horse", store)


async def test_an_address_without_a_password_cannot_sign_in(store):
    assert not await PasswordAuthenticator().authenticate("bob@example.test", "anything at all", store)


async def test_a_short_password_is_refused_saying_how_long_it_must_be(store):
    with pytest.raises(ValueError, match="shorter than 8 characters"):
        await PasswordAuthenticator().set_password(ALICE, "short", store)
