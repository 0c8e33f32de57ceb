"""The project's shared fixtures for this plugin's tests: the scriptable POP3
server factory (``pop3_server``) and the real Dovecot (``dovecot_factory``,
with the test CA it needs).  ``tests/conftest.py`` does not reach tests that
live beside a plugin, so they are imported here by name."""

from tests.conftest import pop3_server  # noqa: F401
from tests.support.fixtures import dovecot_factory, server_cert, test_ca  # noqa: F401
