"""The contract every state store passes (:class:`rpopcore.testing.contract.StateStoreContract`).
Each store plugin of this repository is listed in STORES and gets every
test: SQLite in a temporary folder, PostgreSQL in a new database on the real
server the tests start."""

from __future__ import annotations

import pytest

from rpopcore.testing.contract import StateStoreContract

STORES = ["sqlite", "postgresql"]


class TestStateStores(StateStoreContract):
    @pytest.fixture(params=STORES)
    def store_name(self, request) -> str:
        return request.param

    @pytest.fixture
    def store_options(self, store_name, request) -> dict:
        """The ``[state]`` table (less ``plugin``) of a new, empty store."""
        if store_name == "postgresql":
            return {"dsn": request.getfixturevalue("postgresql_dsn"), "lease_timeout": "6s"}
        return {}
