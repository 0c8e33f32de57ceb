"""The core holds no concrete strategy: it imports no plugin, and neither
its configuration keys nor its code name what a plugin keeps (OAuth2's
tables and secrets live in rpop-oauth2, declared through
rpop_record_options); a core-only install says which plugin is missing."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

from rpopcore import api
from rpopcore.config import declarative, site
from rpopcore.plugins import STANDARD_DISTRIBUTIONS
from rpopcore.testing import Message, poll_one, remote
from tests.cli.conftest import run_rpop

ROOT = Path(__file__).parents[2]
CORE = sorted(p for p in (ROOT / "rpopcore").rglob("*.py"))
#: What a strategy plugin keeps, which the core must not name.
STRATEGY_WORDS = re.compile(r"\b(oauth2|refresh_token|client_secret|token_endpoint|xoauth2|oauthbearer|maildir_root)\b",
                            re.IGNORECASE)
#: Import names of distributions whose import name differs.
_IMPORT_NAMES = {"python_multipart": "multipart"}


def _core_dependencies() -> set[str]:
    """What the core may import besides the standard library and itself:
    the dependencies pyproject.toml declares for it (the test kit also uses
    pytest)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("-", "_") for d in declared}
    return {_IMPORT_NAMES.get(n, n) for n in names} | {"pytest"}


CORE_DEPENDENCIES = _core_dependencies()


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_the_core_imports_no_plugin():
    wrong = []
    for path in CORE:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "rpopcore" and top not in CORE_DEPENDENCIES:
                    wrong.append(f"{path.relative_to(ROOT)}: imports {name}")
    assert not wrong, "\n".join(wrong)


def test_no_core_config_key_and_no_core_code_names_a_strategy():
    keys = [*declarative.SETTINGS_KEYS, *declarative.RECORD_KEYS, *declarative.DOMAIN_KEYS, *site.BOUNCES_KEYS]
    assert not [k for k in keys if STRATEGY_WORDS.search(k)]
    wrong = []
    for path in CORE:
        if path.name == "plugins.py" or "testing" in path.parts or "importers" in path.parts:
            # The install hints name the standard distributions; the test
            # kit configures real servers (Dovecot's oauth2 passdb); the
            # importers translate other tools' words for these mechanisms
            # into the names records give (auth = "xoauth2").
            continue
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                if STRATEGY_WORDS.search(node.value):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
            elif isinstance(node, ast.Name) and STRATEGY_WORDS.search(node.id):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.id}")
    assert not wrong, "\n".join(wrong)


def test_every_install_hint_names_a_real_distribution_that_provides_that_plugin():
    provided = {}
    for pyproject in (ROOT / "plugins").glob("*/*/pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        for name in project.get("entry-points", {}).get("rpop", {}):
            provided[project["name"]] = provided.get(project["name"], set()) | {name}
    for kind, names in STANDARD_DISTRIBUTIONS.items():
        for name, distribution in names.items():
            assert distribution in provided, f"{distribution} is no distribution of this repository"
            assert name.replace("-", "_") in provided[distribution], f"{distribution} does not provide {name!r}"


async def test_without_a_routing_plugin_apply_says_which_distribution_is_missing(rpop_site, monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "sqlite,maildir,userpass,owner")
    with pytest.raises(api.ConfigError, match=r"no routing plugin is installed.*pip install rpop-routing-directory"):
        await rpop_site('[[remote]]\nowner = "alice@example.test"\naccount = "a"\nhost = "127.0.0.1:1110"\n'
                        'password = "p"\n')


async def test_without_the_delivery_plugin_open_names_its_distribution(rpop_site, monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "sqlite")
    with pytest.raises(api.ConfigError, match=r"\[delivery\] key 'plugin': no installed plugin provides 'maildir' "
                                              r"\(available: [^)]*\); pip install rpop-delivery-maildir"):
        await rpop_site("")


async def test_without_an_auth_plugin_apply_says_which_distribution_is_missing(rpop_site, monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "sqlite,maildir,owner,directory")
    with pytest.raises(api.ConfigError, match=r"no authentication plugin is installed.*pip install rpop-auth-userpass"):
        await rpop_site('[[remote]]\nowner = "alice@example.test"\naccount = "a"\nhost = "127.0.0.1:1110"\n'
                        'password = "p"\n')


async def test_without_a_recipient_strategy_the_poll_fails_naming_the_distribution(pop3_server, rpop_site, monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "sqlite,maildir,directory,userpass")
    server = await pop3_server([Message("a", b"Subject: a\r\n\r\nbody\r\n")])
    site = await rpop_site(remote(server.host, server.port))
    result = await poll_one(site)
    assert result.error == "delivery-failed"
    assert "pip install rpop-recipients-owner" in result.detail
    assert server.uids() == ["a"], "the message stays on the server"


def test_init_says_which_plugins_its_site_file_names_are_missing(tmp_path):
    result = run_rpop("init", tmp_path / "site", env={"RPOP_PLUGINS": "sqlite"})
    assert result.returncode == 0 and (tmp_path / "site" / "rpop.toml").exists()
    assert result.stderr.strip().splitlines() == [
        "rpop: [delivery] names the plugin 'maildir', which is not installed; pip install rpop-delivery-maildir "
        "(or pip install 'rpop[standard]' for the standard set)"]
