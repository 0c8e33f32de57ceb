"""A third party's path, as docs/plugins.md gives it: generate a delivery
and an auth plugin, build wheels, install them next to a wheel-installed
rpop in a clean virtualenv (nothing of this repository on its path), run
the generated tests there with the kit, and see ``rpop plugins`` list the
plugins and ``poll --once`` use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rpopcore.testing.scriptable_server import Message
from tests.cli.conftest import run_rpop

ROOT = Path(__file__).parents[2]
#: What rpop[testing] brings besides the kit: the plugins of its test sites.
KIT = ["plugins/storage/sqlite", "plugins/routing/directory", "plugins/recipients/owner", "plugins/auth/userpass",
       "plugins/delivery/maildir"]


def run(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    # No PYTHONPATH and no repository folder as the working directory: what
    # runs comes from the clean virtualenv alone.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RPOP_PLUGINS")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def test_generated_plugins_from_wheels_are_listed_tested_and_used(tmp_path, threaded_pop3):
    source = tmp_path / "src"
    run_rpop("plugin", "new", "delivery", "outbox", source / "outbox").check_returncode()
    run_rpop("plugin", "new", "auth", "legacy", source / "legacy").check_returncode()
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels,
        ROOT, *(ROOT / p for p in KIT), source / "outbox", source / "legacy")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--find-links", wheels,
        *sorted(wheels.glob("*.whl")), "rpop[testing]")

    listed = {row["name"]: row for row in json.loads(run(venv / "bin" / "rpop", "plugins", "--json").stdout)}
    assert listed["outbox"]["distribution"] == "rpop-delivery-outbox"
    assert listed["legacy"]["distribution"] == "rpop-auth-legacy"
    assert set(listed) == {"outbox", "legacy", "sqlite", "directory", "owner", "userpass", "maildir"}
    for name in ("outbox", "legacy"):
        assert " passed" in run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=source / name).stdout

    server = threaded_pop3([Message("a", b"Return-Path: <carol@isp.test>\r\nSubject: hello\r\n\r\nbody\r\n")],
                           user="alice.smith", password="pw")
    site = tmp_path / "site"
    run(venv / "bin" / "rpop", "init", site)
    text = (site / "rpop.toml").read_text()
    (site / "rpop.toml").write_text(text.replace('plugin = "maildir"\nroot = "mail"', 'plugin = "outbox"'))
    (site / "decl.toml").write_text(f'''[rpop]
allow_self_poll = true

[[domain]]
name = "example.test"
accounts = ["alice"]

[[remote]]
owner = "alice@example.test"
account = "alice.smith"
host = "127.0.0.1:{server.port}"
password = "pw"
auth = "legacy"
''')
    rpop = venv / "bin" / "rpop"
    run(rpop, "-c", site / "rpop.toml", "apply", site / "decl.toml", cwd=tmp_path)
    [polled] = json.loads(run(rpop, "-c", site / "rpop.toml", "poll", "--once", "--json", cwd=tmp_path).stdout)
    assert (polled["retrieved"], polled["delivered"], polled["error"]) == (1, 1, None)
    [copy] = (site / "outbox" / "alice@example.test").glob("*.eml")
    assert copy.read_bytes().endswith(b"Subject: hello\n\nbody\n")
    assert any(line.startswith("USER alice.smith") for s in server.sessions for line in s.commands)
