"""The example plugin from docs/architecture.md works as the docs say: it is
registered like any other plugin and the pipeline delivers through it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rpopcore import errors
from rpopcore.plugins import describe, plugin_manager
from rpopcore.testing.scriptable_server import Message
from rpopcore.service import Site
from rpopcore.testing.sites import make_site, remote

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "rpop_delivery_count" / "rpop_delivery_count.py"


def load_example():
    spec = importlib.util.spec_from_file_location("rpop_delivery_count", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_plugin_registered_by_hand_delivers_what_is_polled(pop3_server, tmp_path):
    example = load_example()
    pm = plugin_manager()
    pm.register(example, name="count")
    server = await pop3_server([Message("a", b"Subject: a\r\n\r\nx\r\n"), Message("b", b"Subject: b\r\n\r\ny\r\n")])
    site_file = make_site(tmp_path, remote(server.host, server.port))
    site_file.write_text(site_file.read_text().replace('plugin = "maildir"\nroot = "mail"', 'plugin = "count"'))
    site = await Site.open(site_file, pm=pm)
    await site.apply(tmp_path / "decl.toml")
    (result,) = await site.poll_once()
    assert (result.delivered, result.error) == (2, None)
    assert example.AGENT.delivered == {"alice@example.test": 2}
    assert any(row["name"] == "count" and row["hooks"] == ["rpop_delivery_agents"] for row in describe(pm))
    await site.close()


def test_a_hook_implementation_with_a_typo_fails_loudly():
    from rpopcore.hookspecs import hookimpl

    class Typo:
        @hookimpl
        def rpop_delivery_agent(self):  # the hook is rpop_delivery_agents
            return {}

    pm = plugin_manager()
    pm.register(Typo())
    with pytest.raises(Exception, match="rpop_delivery_agent"):
        pm.check_pending()


def test_rpop_plugins_limits_entry_points(monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "sqlite,maildir")
    names = {row["name"] for row in describe(plugin_manager())}
    assert names == {"sqlite", "maildir"}


async def test_a_site_naming_an_uninstalled_plugin_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "sqlite")
    site_file = make_site(tmp_path, "")
    with pytest.raises(errors.ConfigError, match="no installed plugin provides 'maildir'"):
        await Site.open(site_file)
