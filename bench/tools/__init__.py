"""The retrievers under test, one module each.

A tool turns a :class:`~bench.scenarios.Job` into files in a fresh run
folder and the one command that is measured (:meth:`Tool.prepare`); set-up
steps (writing configuration, ``rpop apply``) happen there, unmeasured.
Every tool delivers into its own fresh Maildirs, keeps the mail on the
server, and starts without any memory of earlier runs (fresh UIDL state),
so it retrieves everything every time.

Every tool logs in with USER/PASS and, except in scenario (e), talks
plain POP3 (no STLS), so all of them do the same protocol work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import attrs

from bench.scenarios import Job


@attrs.frozen
class Prepared:
    """The measured command, and where each local user's mail must land."""

    argv: tuple[str, ...]
    env: dict[str, str]
    maildirs: dict[str, Path]


class Tool:
    name: str = ""
    package: str = ""  # the Debian package (peers)
    binary: str = ""
    multidrop: bool = True  # can it distribute a domain mailbox?
    #: Runs as the unprivileged benchmark user (False: as the harness's
    #: user, for a tool installed where that user cannot reach it).
    unprivileged: bool = True

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def version(self) -> str:
        return debian_version(self.package)

    def prepare(self, job: Job, run_dir: Path) -> Prepared:
        raise NotImplementedError


def debian_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             capture_output=True, text=True, timeout=30)
    except OSError:
        return "?"
    return out.stdout.strip() or "not installed"


def base_env(run_dir: Path) -> dict[str, str]:
    """A small, fixed environment: nobody reads the real ~/.mpoprc,
    ~/.fetchmailrc or ~/.getmail."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run_dir), "LANG": "C.UTF-8", "TZ": "UTC"}


def make_maildir(path: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def write_private(path: Path, text: str) -> Path:
    """Configuration holding a password: mode 0600, as the tools demand."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def all_tools() -> list[Tool]:
    from bench.tools.fetchmail import Fetchmail
    from bench.tools.getmail6 import Getmail6
    from bench.tools.mpop import Mpop
    from bench.tools.rpop import Rpop

    return [Rpop(), Mpop(), Fetchmail(), Getmail6()]


PEERS = ("mpop", "fetchmail", "getmail6")
