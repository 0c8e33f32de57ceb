"""rpop itself: a site made with ``rpop init``, the job applied as a
declarative file, then the measured ``rpop -c SITE poll --once --json``.

rpop is edited while benchmarks run, so a run measures a snapshot:
:meth:`Rpop.pin` copies ``rpopcore`` and every plugin package of the work
tree (uncommitted changes included) into the work folder, and every rpop
command of the run imports from there (``PYTHONPATH`` comes before the
editable installs' finders).  The installed distributions still supply
the entry points, which name modules, so the snapshot's modules load.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench.measure import run_setup
from bench.scenarios import Job
from bench.tools import Prepared, Tool, base_env


def rpop_command() -> list[str]:
    """The console script beside this Python (not a pyenv shim, whose bash
    start-up would be measured too), else ``python -m rpopcore``."""
    beside = Path(sys.executable).parent / "rpop"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("rpop")
    return [found] if found else [sys.executable, "-m", "rpopcore"]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _table(header: str, values: dict) -> str:
    return f"{header}\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items()) + "\n"


def declaration(job: Job) -> str:
    """The declarative file for a job."""
    connection = {"host": f"{job.host}:{job.port}", "password": job.password, "leave": True,
                  "auth": "userpass", "timeout": f"{job.timeout}s", "poll_every": "10m"}
    if job.tls:
        connection.update(tls=True, ca_file=job.ca_file)
    else:
        connection["starttls"] = "never"
    text = _table("[rpop]", {"allow_self_poll": True, "processors": job.processors})
    if job.multidrop:
        md = job.multidrop
        text += _table("[[domain]]", {"name": md.domain, "main": True, "accounts": [*md.users, "postmaster"]})
        (box,) = job.mailboxes
        text += _table("[[unified]]", {"account": box.account, **connection, "special_field": md.header})
        return text
    text += _table("[[domain]]", {"name": job.domain, "main": True, "accounts": list(job.locals)})
    for box in job.mailboxes:
        text += _table("[[remote]]", {"owner": f"{box.local}@{job.domain}", "account": box.account, **connection})
    return text


ROOT = Path(__file__).resolve().parents[2]


def _packages() -> list[Path]:
    """``rpopcore`` and the Python package of every plugin distribution."""
    found = [ROOT / "rpopcore"]
    for dist in sorted((ROOT / "plugins").glob("*/*")):
        found += [p for p in sorted(dist.iterdir())
                  if p.is_dir() and (p / "__init__.py").exists() and p.name != "tests"]
    return found


def tree_state() -> str:
    """``git <head>``, plus a digest of the uncommitted changes to rpop's
    code when there are any."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "not a git work tree"
    status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "rpopcore", "plugins"],
                            capture_output=True, text=True).stdout
    if not status.strip():
        return f"git {head.stdout.strip()}"
    digest = hashlib.sha256()
    for package in _packages():
        for path in sorted(package.rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"git {head.stdout.strip()} + uncommitted changes (sha256 {digest.hexdigest()[:10]})"


class Rpop(Tool):
    name = "rpop"
    binary = "rpop"
    # rpop is installed into the harness's own Python (often under /root,
    # which other users cannot enter), so it runs as the harness's user.
    unprivileged = False

    def __init__(self) -> None:
        self.snapshot: Path | None = None
        self.state = ""

    def available(self) -> bool:
        return True

    def pin(self, work: Path) -> None:
        """Copy rpop's code into ``work``; later commands import it from there."""
        self.state = tree_state()
        snapshot = work / "rpop-code"
        for package in _packages():
            shutil.copytree(package, snapshot / package.name,
                            ignore=shutil.ignore_patterns("__pycache__", "tests", "*.egg-info"))
        self.snapshot = snapshot
        names = [p.name for p in _packages()]
        check = subprocess.run(
            [sys.executable, "-c", f"import importlib; print(*(importlib.import_module(n).__file__ for n in {names!r}))"],
            env={**self._env(work), "PYTHONDONTWRITEBYTECODE": "1"}, cwd=work, capture_output=True, text=True,
        )
        outside = [f for f in check.stdout.split() if not f.startswith(str(snapshot))]
        if check.returncode != 0 or outside:
            raise RuntimeError(f"rpop's code does not load from the snapshot {snapshot}: "
                               f"{check.stderr.strip() or ', '.join(outside)}")

    def _env(self, run_dir: Path) -> dict[str, str]:
        env = base_env(run_dir)
        if self.snapshot is not None:
            env["PYTHONPATH"] = str(self.snapshot)
        return env

    def version(self) -> str:
        out = subprocess.run([*rpop_command(), "--version"], capture_output=True, text=True)
        version = out.stdout.strip().removeprefix("rpop ") or "?"
        return f"{version} ({self.state or tree_state()})"

    def prepare(self, job: Job, run_dir: Path) -> Prepared:
        env = self._env(run_dir)
        site = run_dir / "site"
        run_setup([*rpop_command(), "init", str(site)], cwd=run_dir, env=env)
        decl = run_dir / "bench.toml"
        decl.write_text(declaration(job))
        config = site / "rpop.toml"
        run_setup([*rpop_command(), "-c", str(config), "apply", str(decl)], cwd=run_dir, env=env)
        domain = job.multidrop.domain if job.multidrop else job.domain
        maildirs = {user: site / "mail" / domain / user for user in job.locals}
        return Prepared((*rpop_command(), "-c", str(config), "poll", "--once", "--json"), env, maildirs)
