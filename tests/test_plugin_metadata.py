"""Every plugin distribution declares what it imports.

The test environment has every plugin installed at once, so a plugin that
imports a package only another plugin depends on would pass every other
test and break when installed alone.  This reads each plugin's own modules
and its pyproject.toml and checks that each third-party import is declared.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/*/pyproject.toml"))


def _declared(project: dict) -> set[str]:
    names = set()
    for requirement in project.get("dependencies", []):
        name = requirement.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def _imports(package_dir: Path) -> set[str]:
    found = set()
    for path in package_dir.rglob("*.py"):
        if "tests" in path.relative_to(package_dir).parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_plugin_declares_every_distribution_it_imports(plugin):
    project = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    declared = _declared(project)
    assert "rpop" in declared, f"{plugin}: depend on rpop"
    own = {p.name for p in plugin.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    providers = importlib.metadata.packages_distributions()
    core = set(sys.stdlib_module_names) | {"rpopcore"} | own
    if "pytest11" in project.get("entry-points", {}):
        core.add("pytest")  # its test kit is loaded by pytest only
    for package_dir in (plugin / name for name in own):
        for module in sorted(_imports(package_dir) - core):
            dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
            local = {p.name for p in PLUGINS for p2 in p.iterdir() if p2.name == module}
            if local:  # another plugin distribution of this repository
                names = {tomllib.loads((p / "pyproject.toml").read_text())["project"]["name"] for p in PLUGINS if (p / module).exists()}
                dists |= names
            assert dists & declared, f"{plugin.name} imports {module!r} but declares none of {sorted(dists)} in {plugin / 'pyproject.toml'}"


def test_every_plugin_is_in_requirements_txt():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    listed = {line.split()[1].split("[")[0] for line in lines if line.startswith("-e plugins/")}
    assert listed == {str(p.relative_to(ROOT)) for p in PLUGINS}


@pytest.mark.parametrize("folder", [ROOT, *PLUGINS], ids=lambda p: "rpop" if p == ROOT else f"{p.parent.name}/{p.name}")
def test_every_distribution_can_be_shipped(folder):
    """What a distribution packager needs: a licence file, a README as the
    long description, classifiers, requires-python, and a bounded rpop."""
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert (folder / "LICENSE").is_file() and "MIT License" in (folder / "LICENSE").read_text()
    assert project.get("readme") == "README.md" and (folder / "README.md").read_text().strip()
    assert project.get("license") == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in project.get("classifiers", [])
    assert project.get("requires-python") == ">=3.11"
    for requirement in project.get("dependencies", []):
        if requirement.startswith("rpop"):
            assert "<" in requirement, f"{folder}: bound {requirement!r} from above (the API may change in 0.x)"


def test_rpop_standard_installs_every_plugin_distribution():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    standard = {r.split(">")[0] for r in extras["standard"]}
    assert standard == {tomllib.loads((p / "pyproject.toml").read_text())["project"]["name"] for p in PLUGINS}
