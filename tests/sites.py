"""Building sites for tests: a folder with a site file, a key, and a
declarative file applied -- the same steps an administrator takes."""

from __future__ import annotations

import textwrap
from pathlib import Path

from rpopcore.cli import _init
from rpopcore.service import Site

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


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_site(folder: Path, declaration: str, settings: str = "allow_self_poll = true\n") -> Path:
    """Create a site in ``folder`` and write ``decl.toml``; returns the site file."""
    _init(folder)
    (folder / "decl.toml").write_text("[rpop]\n" + textwrap.dedent(settings) + DOMAIN + declaration)
    return folder / "rpop.toml"


async def open_site(folder: Path, declaration: str, settings: str = "allow_self_poll = true\n") -> Site:
    site = await Site.open(make_site(folder, declaration, settings))
    await site.apply(folder / "decl.toml")
    return site


def delivered(folder: Path, user: str = "alice", domain: str = "example.test") -> list[bytes]:
    """Messages in a local Maildir's new/, oldest first (deliveries run
    concurrently, so the order of messages from one poll is not fixed)."""
    paths = sorted((folder / "mail" / domain / user / "new").glob("*"), key=lambda p: p.stat().st_mtime_ns)
    return [p.read_bytes() for p in paths]


async def poll_one(site):
    """Poll a site holding one enabled record; its result."""
    (result,) = await site.poll_once()
    return result
