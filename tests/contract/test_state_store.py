"""The contract every state store passes (:class:`rpopcore.testing.contract.StateStoreContract`).
Each store plugin of this repository is listed in STORES and gets every test."""

from __future__ import annotations

import pytest

from rpopcore.testing.contract import StateStoreContract

STORES = ["sqlite"]


class TestStateStores(StateStoreContract):
    @pytest.fixture(params=STORES)
    def store_name(self, request) -> str:
        return request.param
