"""The plugin API is declared in one module, and the plugins of this
repository use nothing else of the core: what a third party can rely on is
exactly what the in-tree plugins need."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from rpopcore import api
from rpopcore.api import ConfigError, hookimpl

ROOT = Path(__file__).parents[2]
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/*/pyproject.toml"))
#: What a plugin's code may import from rpop, and what its tests may add.
ALLOWED = {"rpopcore.api"}
ALLOWED_IN_TESTS = ALLOWED | {"rpopcore.testing", "rpopcore.testing.contract"}


def _rpop_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of rpopcore or of the repository's
    ``tests`` package in a file, at any depth (imports inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "rpopcore":
                modules = [f"rpopcore.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m.split(".")[0] in ("rpopcore", "tests")]
    return found


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_plugin_imports_only_the_public_api(plugin):
    wrong = []
    for path in sorted(plugin.rglob("*.py")):
        # A plugin's testing module extends the test kit (a pytest11 plugin).
        in_tests = "tests" in path.relative_to(plugin).parts or path.name == "testing.py"
        allowed = ALLOWED_IN_TESTS if in_tests else ALLOWED
        wrong += [f"{path.relative_to(ROOT)}:{line}: {module}" for line, module in _rpop_imports(path)
                  if module not in allowed]
    assert not wrong, "import from rpopcore.api (tests: also rpopcore.testing) only:\n" + "\n".join(wrong)


def test_every_public_name_resolves_and_is_documented():
    undocumented = []
    for name in api.__all__:
        value = getattr(api, name)  # the lazily loaded ones too
        if (inspect.isclass(value) or inspect.isfunction(value)) and not inspect.getdoc(value):
            undocumented.append(name)
    assert not undocumented, f"give these a docstring: {', '.join(undocumented)}"
    assert sorted(dir(api)) == sorted(api.__all__)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'SqliteStore'"):
        api.SqliteStore  # noqa: B018


async def test_two_plugins_providing_one_delivery_name_is_an_error_naming_both(rpop_site):
    class Shadow:
        @hookimpl
        def rpop_delivery_agents(self):
            return {"maildir": lambda options, base_dir: None}

    with pytest.raises(ConfigError, match=r"two plugins provide 'maildir' \(rpop_delivery_agents\): "
                                          r"the plugin 'maildir' \(rpop-delivery-maildir 0\.1\.0\) and a plugin registered by hand; uninstall one"):
        await rpop_site("", plugins=[Shadow()])


async def test_two_plugins_providing_one_mechanism_is_an_error_naming_both(rpop_site):
    class Again:
        @hookimpl
        def rpop_auth_mechanisms(self):
            from rpop_auth_apop import Apop

            return [Apop()]

    with pytest.raises(ConfigError, match=r"two plugins provide 'apop' \(rpop_auth_mechanisms\): the plugin 'apop' "
                                          r"\(rpop-auth-apop 0\.1\.0\)"):
        await rpop_site("", plugins=[Again()])


def test_the_reference_in_docs_plugins_md_is_generated_from_the_docstrings():
    text = (ROOT / "docs" / "plugins.md").read_text()
    current = text.split("<!-- api-reference -->\n\n", 1)[1].split("\n<!-- /api-reference -->", 1)[0]
    assert current == api.reference(), (
        "docs/plugins.md is out of date: replace what is between the api-reference markers with the output of "
        "python -m rpopcore.api"
    )


def test_a_distribution_is_named_from_its_metadata_folder_with_or_without_a_version():
    from rpopcore.plugins import EntryPoint

    assert EntryPoint("smtp", "m", "/v/rpop_delivery_smtp-0.1.0.dist-info").dist_name == "rpop-delivery-smtp 0.1.0"
    # A plugin's own source folder on the path (python -m pytest there) holds one without.
    assert EntryPoint("oauth2", "m", "/src/rpop_oauth2.egg-info").dist_name == "rpop-oauth2"
