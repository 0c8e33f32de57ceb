"""The plugin API is declared in one module, and the plugins of this
repository use nothing else of the core: what a third party can rely on is
exactly what the in-tree plugins need."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from rpopcore import api

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
        in_tests = "tests" in path.relative_to(plugin).parts
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
