"""``rpop plugin new KIND NAME [DIR]``: a new plugin distribution that works
and passes its tests as generated, for an integrator to start from green.

It writes ``pyproject.toml`` (the ``rpop`` entry point, a bounded ``rpop``
requirement, classifiers, a ``test`` extra with the test kit), ``LICENSE``,
``README.md``, the module with a documented hook implementation, and tests
that use the kit (``rpopcore.testing``) and its contract tests.  See
``docs/plugins.md`` for the steps from there to a published distribution.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from rpopcore import __version__, errors

#: The kinds a template exists for, and the hook each implements.
KINDS = {
    "auth": "rpop_auth_mechanisms",
    "delivery": "rpop_delivery_agents",
    "recipients": "rpop_resolve_envelope",
    "routing": "rpop_route_address",
}

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def _bound() -> str:
    """The ``rpop`` requirement: this release series (0.x: minor releases
    may change the API, see docs/plugins.md, "Stability")."""
    major, minor = (int(part) for part in __version__.split(".")[:2])
    return f"rpop>={major}.{minor},<{major}.{minor + 1}" if major == 0 else f"rpop>={major}.{minor},<{major + 1}"


def new_plugin(kind: str, name: str, folder: Path | None = None) -> Path:
    """Write the distribution ``rpop-KIND-NAME`` into ``folder`` (default:
    ``./rpop-KIND-NAME``); returns the folder.  Bad input is a ConfigError."""
    if kind not in KINDS:
        raise errors.ConfigError(f"plugin new: no template for {kind!r}; choose one of {', '.join(KINDS)}")
    if not _NAME.match(name):
        raise errors.ConfigError(
            f"plugin new: {name!r} is not a plugin name; use lower-case letters, digits and '_', "
            "starting with a letter (it becomes a Python package name)"
        )
    distribution = f"rpop-{kind}-{name.replace('_', '-')}"
    package = f"rpop_{kind}_{name}"
    folder = Path(folder) if folder is not None else Path(distribution)
    if folder.exists() and any(folder.iterdir()):
        raise errors.ConfigError(f"plugin new: {folder} exists and is not empty; choose a new folder")
    values = {
        "NAME": name,
        "KIND": kind,
        "DIST": distribution,
        "PACKAGE": package,
        "RPOP": _bound(),
        "HOOK": KINDS[kind],
        "YEAR": str(dt.date.today().year),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "LICENSE": LICENSE,
        "README.md": README[kind],
        f"{package}/__init__.py": MODULE[kind],
        f"tests/test_{name}.py": TEST[kind],
    }
    try:
        for relative, text in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_fill(text, values), encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"plugin new: cannot write {exc.filename or folder} ({exc.strerror})") from None
    return folder


def _fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"@(\w+)@", lambda m: values[m.group(1)], text)


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "@DIST@"
version = "0.1.0"
description = "An rpop @KIND@ plugin: @NAME@"
readme = "README.md"
license = { text = "MIT" }
requires-python = ">=3.11"
dependencies = ["@RPOP@"]
classifiers = [
    "Development Status :: 3 - Alpha",
    "Environment :: Plugins",
    "Intended Audience :: System Administrators",
    "License :: OSI Approved :: MIT License",
    "Operating System :: POSIX",
    "Programming Language :: Python :: 3",
    "Topic :: Communications :: Email :: Post-Office :: POP3",
]

[project.optional-dependencies]
# the tests use rpop's test kit (fixtures through the pytest11 entry point)
test = ["rpop[testing]"]

# How rpop finds the plugin: the name here is what `rpop plugins` lists.
[project.entry-points.rpop]
@NAME@ = "@PACKAGE@"

[tool.setuptools]
packages = ["@PACKAGE@"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
addopts = "-ra --strict-markers --import-mode=importlib"
'''

LICENSE = '''\
MIT License

Copyright (c) @YEAR@ the authors of @DIST@

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
'''

_README_TAIL = '''
## Develop

    python -m venv .venv && . .venv/bin/activate
    pip install -e '.[test]'
    python -m pytest

The tests use rpop's test kit (`rpopcore.testing`): its fixtures come with
`rpop[testing]`, and the contract tests check what rpop relies on from
every plugin of this kind.  Import from `rpopcore.api` only: everything else
of rpop is private and may change.

## Install next to rpop

    pip install .
    rpop plugins        # lists @NAME@
'''

README = {
    "delivery": '''\
# @DIST@

An rpop delivery plugin: each retrieved copy is written, durably, as one
`.eml` file per recipient into a folder (`FOLDER/ADDRESS/`).

Select it in the site file:

    [delivery]
    plugin = "@NAME@"
    folder = "outbox"     # relative to the site file's folder
''' + _README_TAIL,
    "recipients": '''\
# @DIST@

An rpop recipient strategy: a per-user record with `@NAME@_copy_to` sends
each message to its owner and to that address too (a record key the plugin
declares through `rpop_record_options`).

    [[remote]]
    owner = "alice@example.test"
    account = "alice"
    host = "pop.example.test"
    password_env = "ALICE_POP_PASSWORD"
    @NAME@_copy_to = "bob@example.test"
''' + _README_TAIL,
    "routing": '''\
# @DIST@

An rpop routing rule: sub-addresses (`alice+news@example.test`) are routed
to their account (`alice@example.test`); every other address is left to the
next routing plugin (rpop-routing-directory).
''' + _README_TAIL,
    "auth": '''\
# @DIST@

An rpop authentication mechanism: `@NAME@`, used when a record names it
(`auth = "@NAME@"`).  As generated it logs in with USER/PASS; replace
`authenticate` with the exchange your servers speak.

    [[remote]]
    owner = "alice@example.test"
    account = "alice"
    host = "pop.example.test"
    password_env = "ALICE_POP_PASSWORD"
    auth = "@NAME@"
''' + _README_TAIL,
}

MODULE = {
    "recipients": '''\
"""@DIST@: per-user records that name a second recipient.

A record with ``@NAME@_copy_to = "ADDRESS"`` (a key declared below through
``rpop_record_options``) delivers each message to its owner and to ADDRESS,
when ADDRESS is a local account; every other record is left to the next
recipient strategy (rpop-recipients-owner), by returning None.
"""

from __future__ import annotations

from rpopcore.api import Envelope, Recipient, RecordKind, RecordOption, hookimpl, non_empty_string

COPY_TO = RecordOption(
    name="@NAME@_copy_to",
    convert=non_empty_string,
    help="a local address that gets a copy of every message too",
    kinds=("remote",),
)


@hookimpl
def rpop_record_options():
    """The record key this plugin adds."""
    return [COPY_TO]


@hookimpl
def @HOOK@(record, message, route):
    """Owner and copy, neither reported to on failure; None for records
    without the key (first answer wins: the next strategy decides)."""
    copy_to = record.options.get(COPY_TO.name)
    if record.kind is not RecordKind.REMOTE or not copy_to:
        return None
    recipients = [Recipient(address=route(record.owner) or record.owner, original=record.owner)]
    copy = route(copy_to)
    if copy is not None and copy != recipients[0].address:
        recipients.append(Recipient(address=copy, original=copy_to))
    return Envelope(sender=message.return_path, recipients=tuple(recipients))
''',
    "routing": '''\
"""@DIST@: sub-addresses route to their account.

``alice+news@example.test`` is ``alice@example.test`` when alice is an
account (or an alias) of the local domain; every address without a ``+``
is left to the next routing plugin (rpop-routing-directory), by returning
None (first answer wins).
"""

from __future__ import annotations

from rpopcore.api import hookimpl


@hookimpl
def @HOOK@(address, directory):
    """The account of a sub-address, or None."""
    localpart, at, domain_name = address.strip().strip("<>").rpartition("@")
    base, plus, _tag = localpart.partition("+")
    domain = directory.domain(domain_name) if at else None
    if not plus or not base or domain is None:
        return None
    base = base.lower()
    if base in domain.accounts:
        return f"{base}@{domain.name}"
    target = domain.aliases.get(base)
    return f"{target}@{domain.name}" if target else None
''',
    "delivery": '''\
"""@DIST@: an rpop delivery agent writing one ``.eml`` file per recipient
into ``FOLDER/ADDRESS/``.

rpop deletes a message from the server (or remembers it as seen) right
after the agent reports it delivered, so a copy is reported delivered only
once it is durable: written to a temporary name, fsync'd, renamed into
place, and the folder fsync'd.  Anything uncertain is ``temporary``: the
message stays on the server and is tried again at the next poll.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from rpopcore.api import Key, Outcome, RecipientOutcome, hookimpl, non_empty_string, read_table, trace_fields


class FolderAgent:
    """Writes each copy into ``folder / recipient address``."""

    def __init__(self, folder: Path):
        self.folder = folder

    async def deliver(self, message, envelope, recipients):
        """One outcome per recipient, in order; a failure is an outcome,
        never an exception.  The file work runs in a thread so that the
        event loop (other polls, other deliveries) goes on meanwhile."""
        return [await asyncio.to_thread(self._write, message, envelope, recipient) for recipient in recipients]

    def _write(self, message, envelope, recipient) -> RecipientOutcome:
        box = self.folder / recipient.address
        name = f"{uuid.uuid4().hex}.eml"
        try:
            box.mkdir(parents=True, exist_ok=True)
            with open(box / f".{name}.tmp", "xb") as file:
                # A final delivery puts Return-Path and Delivered-To on top.
                for chunk in message.chunks(envelope.remove_fields, trace_fields(envelope.sender, recipient.address)):
                    file.write(chunk)
                file.flush()
                os.fsync(file.fileno())
            os.rename(box / f".{name}.tmp", box / name)
            folder = os.open(box, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:
            return RecipientOutcome(recipient, Outcome.TEMPORARY, f"cannot write into {box}: {exc.strerror or exc}")
        return RecipientOutcome(recipient, Outcome.DELIVERED, f"written to {box / name}")

    async def close(self) -> None:
        """Nothing is kept open between deliveries."""


def make_agent(options, base_dir: Path) -> FolderAgent:
    """The ``[delivery]`` table (without ``plugin``) -> a :class:`FolderAgent`.
    Cheap and opens nothing: rpop also calls it only to check the options."""
    values = read_table(dict(options), {"folder": Key(non_empty_string, "outbox")}, "[delivery]")
    return FolderAgent(base_dir / values["folder"])


@hookimpl
def @HOOK@():
    """This plugin's delivery agent, selected by ``[delivery] plugin = "@NAME@"``."""
    return {"@NAME@": make_agent}
''',
    "auth": '''\
"""@DIST@: the rpop authentication mechanism ``@NAME@``.

As generated it logs in with USER/PASS (RFC 1939) and only when a record
names it (``auth = "@NAME@"``); replace :meth:`Mechanism.authenticate` with
the exchange your servers speak, raising ``AuthFailed`` when the server
refuses the credentials and ``MechanismUnavailable`` when the mechanism
cannot be used on this connection (``auto`` selection then tries the next).
"""

from __future__ import annotations

from rpopcore.api import hookimpl


class Mechanism:
    #: what a record's ``auth`` key names
    name = "@NAME@"
    #: lower is tried first in ``auth = "auto"`` (USER/PASS is 100)
    auto_rank = 90
    #: True: rpop warns once per record when this runs without TLS
    sends_password_in_clear = True

    def offered(self, context) -> bool:
        """Whether to use it on this connection: here, only when the record
        names it (``context`` also has the server's capabilities, the module
        settings and whether TLS is active)."""
        return context.record.auth == self.name

    async def authenticate(self, client, context, secret: str) -> None:
        """Log in as ``context.record.account`` with ``secret``."""
        await client.user_pass(context.record.account, secret)


@hookimpl
def @HOOK@():
    """This plugin's mechanisms."""
    return [Mechanism()]
''',
}

TEST = {
    "recipients": '''\
"""@NAME@: a record with @NAME@_copy_to delivers to its owner and the copy
address; a record without it is left to the owner strategy."""

from __future__ import annotations

import @PACKAGE@ as plugin

from rpopcore.testing import Message, poll_one, remote


async def test_the_owner_and_the_copy_address_get_each_message(pop3_server, rpop_site, capturing_agent):
    server = await pop3_server([Message("a", b"Subject: a\\r\\n\\r\\nbody\\r\\n")])
    site = await rpop_site(remote(server.host, server.port, **{"@NAME@_copy_to": "al@example.test"},
                                  owner="bob@example.test"), delivery="capture", plugins=[plugin])

    result = await poll_one(site)

    assert (result.delivered, result.error) == (1, None)
    assert sorted(copy.recipient for copy in capturing_agent.copies) == ["alice@example.test", "bob@example.test"]


async def test_a_record_without_the_key_goes_to_its_owner_alone(pop3_server, rpop_site, capturing_agent):
    server = await pop3_server([Message("a", b"Subject: a\\r\\n\\r\\nbody\\r\\n")])
    site = await rpop_site(remote(server.host, server.port), delivery="capture", plugins=[plugin])

    assert (await poll_one(site)).error is None
    assert [copy.recipient for copy in capturing_agent.copies] == ["alice@example.test"]
''',
    "routing": '''\
"""@NAME@: a sub-address routes to its account; anything else is left to
the next routing plugin."""

from __future__ import annotations

import pytest
import @PACKAGE@ as plugin

from rpopcore.api import ConfigError
from rpopcore.testing import Message, poll_one, remote


async def test_a_record_owned_by_a_sub_address_delivers_to_the_account(pop3_server, rpop_site, capturing_agent):
    server = await pop3_server([Message("a", b"Subject: a\\r\\n\\r\\nbody\\r\\n")])
    site = await rpop_site(remote(server.host, server.port, owner="al+news@example.test"), delivery="capture",
                           plugins=[plugin])

    assert (await poll_one(site)).error is None
    assert [copy.recipient for copy in capturing_agent.copies] == ["alice@example.test"]


async def test_a_sub_address_of_no_account_is_still_refused(rpop_site):
    with pytest.raises(ConfigError, match="not a local account"):
        await rpop_site(remote("127.0.0.1", 1110, owner="dave+news@example.test"), plugins=[plugin])
''',
    "delivery": '''\
"""The @NAME@ delivery agent: the contract of every delivery agent, and a
poll through a site that uses it."""

from __future__ import annotations

import pytest
import @PACKAGE@ as plugin

from rpopcore.testing import Message, poll_one, remote
from rpopcore.testing.contract import DeliveryAgentContract


def copies(folder, address: str) -> list[bytes]:
    paths = sorted((folder / address).glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)
    return [path.read_bytes() for path in paths]


class TestContract(DeliveryAgentContract):
    @pytest.fixture
    def agent(self, tmp_path):
        return plugin.make_agent({"folder": "out"}, tmp_path)

    @pytest.fixture
    def received(self, tmp_path):
        return lambda address: copies(tmp_path / "out", address)


async def test_a_poll_writes_each_message_into_the_owners_folder(pop3_server, rpop_site, tmp_path):
    server = await pop3_server([Message("a", b"Return-Path: <carol@isp.test>\\r\\nSubject: hello\\r\\n\\r\\nbody\\r\\n")])
    site = await rpop_site(remote(server.host, server.port), delivery='plugin = "@NAME@"\\nfolder = "out"',
                           plugins=[plugin])

    result = await poll_one(site)

    assert (result.retrieved, result.delivered, result.error) == (1, 1, None)
    [copy] = copies(tmp_path / "site1" / "out", "alice@example.test")
    assert copy.startswith(b"Return-Path: <carol@isp.test>\\n")
    assert copy.endswith(b"Subject: hello\\n\\nbody\\n")
''',
    "auth": '''\
"""The @NAME@ mechanism: the contract of every authentication mechanism,
against the test kit's scriptable POP3 server."""

from __future__ import annotations

import pytest
import @PACKAGE@ as plugin

from rpopcore.testing import Message
from rpopcore.testing.contract import AuthMechanismContract, LoginServer


class TestContract(AuthMechanismContract):
    @pytest.fixture
    def mechanism_name(self):
        return "@NAME@"

    @pytest.fixture
    def mechanism_plugins(self):
        return [plugin]

    @pytest.fixture
    async def login_server(self, pop3_server):
        server = await pop3_server([Message("a", b"Subject: a\\r\\n\\r\\nbody\\r\\n")], user="alice", password="s3cret")
        return LoginServer(server.host, server.port, "alice", "s3cret")
''',
}
