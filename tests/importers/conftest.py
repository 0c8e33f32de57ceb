"""The import command is run as the installed ``rpop``, like the other CLI tests."""

from tests.cli.conftest import rpop, site  # noqa: F401
