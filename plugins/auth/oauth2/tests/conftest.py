"""The project's fixtures (Dovecot, the test CA, the scriptable POP3 server),
the test OAuth provider, and an empty token cache for every test."""

from __future__ import annotations

import pytest
from rpop_oauth2 import CACHE

from tests.conftest import pop3_server  # noqa: F401
from tests.support.fixtures import *  # noqa: F401,F403
from tests.support.oauth2_provider import oauth2_provider  # noqa: F401


@pytest.fixture(autouse=True)
def empty_token_cache():
    """Tokens cached by one test must not serve another."""
    CACHE.clear()
    yield
    CACHE.clear()
