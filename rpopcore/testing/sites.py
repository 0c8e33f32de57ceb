"""Building sites for tests: a folder with a site file, a key, and a
declarative file applied -- the same steps an administrator takes
(``rpop init``, a declarative file, ``rpop apply``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from rpopcore.cli import _init
from rpopcore.plugins import plugin_manager
from rpopcore.service import Site

#: The ``[rpop]`` lines of a test site: the servers of a test run on loopback.
DEFAULT_SETTINGS = "allow_self_poll = true\n"

DOMAIN = """
[[domain]]
name = "example.test"
main = true
accounts = ["alice", "bob", "carol", "postmaster"]
aliases = { al = "alice" }
"""


def remote(host: str, port: int, **keys) -> str:
    """A [[remote]] table for alice (unless ``owner`` says otherwise)."""
    values = {"owner": "alice@example.test", "account": "user", "password": "pass", "host": f"{host}:{port}"}
    values.update(keys)
    lines = ["[[remote]]"] + [f"{k} = {_toml(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def unified(host: str, port: int, **keys) -> str:
    """A [[unified]] table: a domain-wide account, no owner."""
    values = {"account": "user", "password": "pass", "host": f"{host}:{port}"}
    values.update(keys)
    lines = ["[[unified]]"] + [f"{k} = {_toml(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_site(folder: Path, declaration: str, settings: str = DEFAULT_SETTINGS, delivery: str | None = None,
              site_tables: str = "") -> Path:
    """Create a site in ``folder`` and write ``decl.toml``; returns the site
    file.  ``delivery`` replaces the ``[delivery]`` table's lines (default: a
    Maildir under ``folder/mail``); ``site_tables`` is added to the site file
    (a ``[bounces]`` table, ...)."""
    _init(folder)
    site = folder / "rpop.toml"
    if delivery is not None:
        site.write_text(site.read_text().replace('plugin = "maildir"\nroot = "mail"', textwrap.dedent(delivery).strip()))
    if site_tables:
        site.write_text(site.read_text() + "\n" + textwrap.dedent(site_tables))
    (folder / "decl.toml").write_text("[rpop]\n" + textwrap.dedent(settings) + DOMAIN + declaration)
    return folder / "rpop.toml"


async def open_site(
    folder: Path, declaration: str, settings: str = DEFAULT_SETTINGS, delivery: str | None = None, plugins=(),
    site_tables: str = "",
) -> Site:
    """A site made by :func:`make_site` with its declarative file applied,
    opened with the installed plugins and ``plugins`` (plugin objects)."""
    pm = None
    if plugins:
        pm = plugin_manager()
        for plugin in plugins:
            if not pm.is_registered(plugin):  # installed too: its entry point loaded it
                pm.register(plugin)
    site = await Site.open(make_site(folder, declaration, settings, delivery, site_tables), pm=pm)
    await site.apply(folder / "decl.toml")
    return site


def delivered(folder: Path, user: str = "alice", domain: str = "example.test") -> list[bytes]:
    """Messages in a local Maildir's new/, oldest first (deliveries run
    concurrently, so the order of messages from one poll is not fixed)."""
    paths = sorted((folder / "mail" / domain / user / "new").glob("*"), key=lambda p: p.stat().st_mtime_ns)
    return [p.read_bytes() for p in paths]


async def poll_one(site: Site):
    """Poll a site holding one enabled record; its result
    (:class:`rpopcore.model.PollResult`: ``retrieved``, ``delivered``,
    ``error``, ``detail``)."""
    (result,) = await site.poll_once()
    return result
