"""``rpop plugin new``: every template passes its own tests as generated
(the delivery and auth ones are also installed from wheels in
test_plugin_distributions.py), and bad input is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli.conftest import run_rpop


@pytest.mark.parametrize("kind", ["recipients", "routing"])
def test_a_generated_plugin_passes_its_tests(kind, tmp_path):
    folder = tmp_path / f"rpop-{kind}-mine"
    result = run_rpop("plugin", "new", kind, "mine", folder)
    assert result.returncode == 0, result.stderr
    for part in ("pyproject.toml", "LICENSE", "README.md", f"rpop_{kind}_mine/__init__.py", "tests/test_mine.py"):
        assert (folder / part).is_file(), part
    # Not installed: the module is found through PYTHONPATH, and registered
    # by the generated test itself (rpop_site(plugins=[...])).
    env = {**os.environ, "PYTHONPATH": str(folder)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout + run.stderr


def test_bad_kinds_names_and_folders_are_one_line_and_exit_2(tmp_path):
    result = run_rpop("plugin", "new", "storage", "mine", tmp_path / "a")
    assert (result.returncode, result.stderr) == (
        2, "rpop: plugin new: no template for 'storage'; choose one of auth, delivery, recipients, routing\n")
    result = run_rpop("plugin", "new", "delivery", "My-Plugin", tmp_path / "b")
    assert result.returncode == 2 and "'My-Plugin' is not a plugin name" in result.stderr
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    result = run_rpop("plugin", "new", "delivery", "mine", tmp_path / "c")
    assert result.returncode == 2 and "exists and is not empty" in result.stderr
