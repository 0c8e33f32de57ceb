"""Tokens cached by one test must not serve another."""

import pytest
from rpop_oauth2 import CACHE


@pytest.fixture(autouse=True)
def empty_token_cache():
    CACHE.clear()
    yield
    CACHE.clear()
